//! The engine's runtime values (codes or floats, NHWC or not) and the pool that hands finished
//! runs' buffers out again.

/// A runtime value: codes (`u8`) or floats; `[c, h, w]` values of the engine's own making are NHWC.
#[derive(Clone)]
pub(super) enum Buf {
    Codes(Vec<u8>),
    Float(Vec<f32>),
}

#[derive(Clone)]
pub(super) struct Act {
    pub(super) buf: Buf,
    pub(super) nhwc: bool,
}

/// Buffers of finished runs, handed out again: a serving loop allocates (and page-faults in)
/// its activations once, not per batch.
#[derive(Default)]
pub(super) struct Pool(std::sync::Mutex<Buffers>);

/// Free code and float buffers.
pub(super) type Buffers = (Vec<Vec<u8>>, Vec<Vec<f32>>);

impl Pool {
    /// The smallest pooled buffer that holds `len` (or a new one), `len` long: filled with
    /// `fill`, or, when `fill` is `None`, holding whatever it held (for callers that overwrite
    /// every element: filling 25 MB of GELU input each run cost more than the GELU).
    pub(super) fn take<T: Copy>(
        list: &mut Vec<Vec<T>>,
        len: usize,
        fill: Option<T>,
        zero: T,
    ) -> Vec<T> {
        let best = (0..list.len())
            .filter(|&i| list[i].capacity() >= len)
            .min_by_key(|&i| list[i].capacity());
        let mut v = match best {
            Some(i) => list.swap_remove(i),
            None => list.pop().unwrap_or_default(),
        };
        match fill {
            Some(fill) => {
                v.clear();
                v.resize(len, fill);
            }
            None => v.resize(len, zero),
        }
        v
    }

    /// `len` bytes, all `fill`.
    pub(super) fn bytes(&self, len: usize, fill: u8) -> Vec<u8> {
        Self::take(&mut self.0.lock().expect("pool lock").0, len, Some(fill), 0)
    }

    /// `len` bytes the caller overwrites entirely.
    pub(super) fn bytes_any(&self, len: usize) -> Vec<u8> {
        Self::take(&mut self.0.lock().expect("pool lock").0, len, None, 0)
    }

    /// `len` floats the caller overwrites entirely.
    pub(super) fn floats(&self, len: usize) -> Vec<f32> {
        Self::take(&mut self.0.lock().expect("pool lock").1, len, None, 0.0)
    }

    pub(super) fn recycle(&self, buf: Buf) {
        let mut pools = self.0.lock().expect("pool lock");
        match buf {
            Buf::Codes(v) => pools.0.push(v),
            Buf::Float(v) => pools.1.push(v),
        }
    }
}
