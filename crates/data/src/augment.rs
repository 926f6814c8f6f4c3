//! [`Augment`]: light, label-preserving augmentation of small grayscale images (random horizontal
//! flip and a random shift of up to `max_shift` pixels, zero-filled), for training batches only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Random flips and shifts, reproducible from a seed (each call draws from a shared counter, so
/// worker threads never repeat each other's draws).
#[derive(Debug, Clone)]
pub struct Augment {
    /// Largest shift in pixels along each axis.
    pub max_shift: usize,
    /// Flip horizontally with probability 1/2.
    pub horizontal_flip: bool,
    seed: u64,
    counter: Arc<AtomicU64>,
}

/// SplitMix64: a small, well-tested generator (Steele et al. 2014), enough for augmentation draws.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Augment {
    /// Flips and shifts of up to `max_shift` pixels, seeded.
    pub fn new(max_shift: usize, horizontal_flip: bool, seed: u64) -> Self {
        Augment {
            max_shift,
            horizontal_flip,
            seed,
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A randomly flipped and shifted copy of a row-major `height × width` image.
    pub fn apply(&self, pixels: &[f32], height: usize, width: usize) -> Vec<f32> {
        let draw = splitmix64(self.seed ^ splitmix64(self.counter.fetch_add(1, Ordering::Relaxed)));
        let span = 2 * self.max_shift as i64 + 1;
        let dy = (draw % span as u64) as i64 - self.max_shift as i64;
        let dx = ((draw >> 16) % span as u64) as i64 - self.max_shift as i64;
        let flip = self.horizontal_flip && (draw >> 32) & 1 == 1;
        let mut out = vec![0.0; height * width];
        for y in 0..height as i64 {
            let sy = y - dy;
            if sy < 0 || sy >= height as i64 {
                continue;
            }
            for x in 0..width as i64 {
                let sx = x - dx;
                if sx < 0 || sx >= width as i64 {
                    continue;
                }
                let sx = if flip { width as i64 - 1 - sx } else { sx };
                out[(y * width as i64 + x) as usize] = pixels[(sy * width as i64 + sx) as usize];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_shift_without_flip_is_identity_and_shifts_move_pixels() {
        let image: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(Augment::new(0, false, 1).apply(&image, 4, 4), image);
        let augment = Augment::new(1, true, 7);
        let mut changed = 0;
        for _ in 0..20 {
            let out = augment.apply(&image, 4, 4);
            assert_eq!(out.len(), 16);
            // A shift or flip keeps values from the image (or zero fill).
            assert!(out.iter().all(|v| *v == 0.0 || image.contains(v)));
            changed += usize::from(out != image);
        }
        assert!(changed > 10, "most draws change the image: {changed}");
    }
}
