//! `u8 × i8 → i32` matrix multiply, `C[m][n] = Σ_k A[m][k] · B[n][k]`, with the kernel chosen at
//! run time: Intel AMX (`tdpbusd` on tile registers), AVX-512 VNNI (`vpdpbusd` on 512 bits),
//! AVX-VNNI (256 bits), AVX2 (`vpmaddubsw` with the sign trick, exact for weights within ±127)
//! and a portable fallback; threads over tiles.
//!
//! Activations are unsigned codes, weights signed symmetric codes — the pairing VNNI multiplies
//! natively. `A` rows are padded to `kp` (a multiple of 4); `B` is packed once per layer
//! ([`PackedWeights`]) in panels of 16 columns × 4 depths, 64 bytes each, zero-padded.
//! The caller's epilogue receives each computed tile row (raw dot products) and turns it into
//! codes or floats where it lies in cache.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "aarch64")]
mod arm;
mod peak;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use peak::peak_ops_per_second;

/// The fewest multiply-adds a product needs to run on AMX: below it the vector kernels were as
/// fast or faster (GEMM shapes of MiniLM's attention, timed against AVX-512 VNNI on a 2-core Xeon
/// VM); from about 10⁷ AMX was 2.5–2.8× faster (MiniLM's Linear layers). Was 2²²; at 2²⁰
/// ResNet-20's convolutions at batch 1 (1–2.4 M each) run on AMX, 0.293–0.312 against
/// 0.320–0.342 ms in three alternating runs (2026-12-07); shallow products (an attention head's
/// depth of 32) stay on the vector kernels by their depth (`Isa::for_shape`).
const AMX_MIN_MACS: usize = 1 << 20;

/// Columns per packed panel.
pub const PANEL: usize = 16;
/// Products of fewer multiply-adds run on the calling thread: about 10 µs of one core's GEMM,
/// what waking rayon's other threads and joining them costs on these VMs. Measured on a 2-core
/// AVX-512 VNNI Xeon, 2026-12-07 (`bench_deploy --float no`, from 2¹⁷): LeNet-BN at batch 1
/// 0.109 → 0.052 ms and ResNet-20 1.07–1.31 → 0.39–0.42 ms, whose every layer is under 2 M
/// multiply-adds per image; batch 64 within noise.
pub const PARALLEL_MIN_MACS: usize = 1 << 22;

/// Rows computed together by a kernel.
pub const MR: usize = 4;

/// A kernel family; [`Isa::best`] is what this CPU runs fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Intel AMX-INT8 (Sapphire Rapids and later Xeons): 32 × 32 tiles of `tdpbusd`, for large
    /// products (smaller ones run on the best vector family, see `Isa::for_shape`).
    Amx,
    /// AVX-512 VNNI: 16 columns × 4 depths per instruction, 32-column tiles.
    Avx512Vnni,
    /// AVX-VNNI (the VEX form on 256 bits): Zen 4/5 and Alder Lake and later.
    AvxVnni,
    /// AVX2 without VNNI (Zen 2/3, Haswell…): `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// AArch64 with the dot-product extension (`sdot`; Armv8.2+: Apple M, Graviton 2+).
    NeonDot,
    /// Plain Rust on any CPU.
    Portable,
}

impl Isa {
    /// Every family, fastest first.
    pub const ALL: [Isa; 6] = [
        Isa::Amx,
        Isa::Avx512Vnni,
        Isa::AvxVnni,
        Isa::Avx2,
        Isa::NeonDot,
        Isa::Portable,
    ];

    /// Whether this CPU can run the family.
    pub fn supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => amx::available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest supported family; `QAT_ENGINE_ISA` (`amx`, `avx512vnni`, `avxvnni`, `avx2`,
    /// `portable`) forces one for comparisons (ignored when unsupported).
    pub fn best() -> Isa {
        if let Ok(name) = std::env::var("QAT_ENGINE_ISA")
            && let Some(isa) = Isa::ALL.into_iter().find(|i| i.name() == name)
            && isa.supported()
        {
            return isa;
        }
        Isa::ALL
            .into_iter()
            .find(|i| i.supported())
            .unwrap_or(Isa::Portable)
    }

    /// The fastest supported family other than AMX (for products AMX cannot read, or runs
    /// slower).
    pub fn vector_best() -> Isa {
        Isa::ALL
            .into_iter()
            .skip(1)
            .find(|i| i.supported())
            .unwrap_or(Isa::Portable)
    }

    /// Every family this CPU supports.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.supported()).collect()
    }

    /// Short name (`avx512vnni`, …).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Amx => "amx",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx2 => "avx2",
            Isa::NeonDot => "neondot",
            Isa::Portable => "portable",
        }
    }

    /// Whether the kernel multiplies `a − 128` (signed) instead of `a`, so the driver adds
    /// `128 · Σw` back.
    fn shifts_activations(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::NeonDot)
    }

    /// `[rows, columns]` one kernel call computes in a product of `n` columns: AVX-512 VNNI
    /// computes 8 × 16 where 4 × 32 would be half padding.
    fn tile_shape(self, n: usize) -> [usize; 2] {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => [amx::ROWS, 2 * PANEL],
            Isa::Avx512Vnni if n <= PANEL => [2 * MR, PANEL],
            Isa::Avx512Vnni => [MR, 2 * PANEL],
            _ => [MR, PANEL],
        }
    }

    /// The family a product of `m` rows, `n` columns and depth `kp` runs on: AMX pays for staging rows and configuring tiles, and wastes much of a
    /// 32 × 32 × 64 block on a few rows or a shallow depth: products under [`AMX_MIN_MACS`] (an
    /// attention head's, 128 × 128 × 32, ran slower on AMX) or at most half a depth tile deep
    /// (ResNet-20's stem, depth 12: 0.87 ms on AMX against 0.71 on the vector kernels at batch
    /// 64) go to the best vector family.
    pub fn for_shape(self, m: usize, n: usize, kp: usize) -> Isa {
        if self == Isa::Amx && (m < 16 || kp <= 32 || m * n * kp < AMX_MIN_MACS) {
            return Isa::vector_best().for_shape(m, n, kp);
        }
        self
    }
}

/// How a caller that writes `A` itself lays out a product computed one row block at a time (a
/// convolution patched and multiplied block by block, so that each block's patches are still in
/// cache for its GEMM): see [`Isa::row_blocks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowBlocks {
    /// Rows of `A` per block.
    pub rows: usize,
    /// Codes from one row of `A` to the next (`kp`, or more for AMX, zero past `kp`).
    pub stride: usize,
}

impl Isa {
    /// The blocks of a product of `m × n × kp` computed one row block at a time: about `bytes`
    /// of `A` per block, in whole tiles. Where the whole product runs on AMX, also enough rows
    /// that each block's own product does ([`AMX_MIN_MACS`]), so that splitting it does not move
    /// it to the vector kernels, and rows laid whole 64-code depth tiles apart, which AMX reads
    /// where they lie instead of copying each row block.
    pub fn row_blocks(self, [m, n, kp]: [usize; 3], bytes: usize) -> RowBlocks {
        let rows = (bytes / kp).clamp(16, 512) / 16 * 16;
        match self.for_shape(m, n, kp) {
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => RowBlocks {
                rows: rows
                    .max(AMX_MIN_MACS.div_ceil(n * kp))
                    .next_multiple_of(amx::ROWS),
                stride: kp.next_multiple_of(amx::DEPTH),
            },
            _ => RowBlocks { rows, stride: kp },
        }
    }
}

/// `k` rounded up to the packing depth (4).
pub fn padded_depth(k: usize) -> usize {
    k.div_ceil(4) * 4
}

/// A weight matrix `[n][k]` (one row per output channel) packed for the kernels.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    /// Output channels.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// `k` padded to a multiple of 4: the row length of `A`.
    pub kp: usize,
    /// `Σ_k B[n][k]` per column: subtracting `z_x · col_sums` removes the input's zero point.
    pub col_sums: Vec<i32>,
    panels: usize,
    data: Vec<i8>,
}

impl PackedWeights {
    /// Packs row-major `w` (`n × k`, codes within ±127).
    pub fn pack(w: &[i8], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weights are n × k");
        let kp = padded_depth(k);
        // An even number of panels, so that 32-column tiles never read past the end, and one
        // AMX tile's worth (16 depth groups) more: AMX reads a panel in whole 64-depth tiles,
        // past the last depth (against zero activation codes) into the next panel or this pad.
        let panels = n.div_ceil(2 * PANEL) * 2;
        let mut data = vec![0i8; panels * PANEL * kp + 16 * 4 * PANEL];
        let mut col_sums = vec![0i32; n];
        for (col, (row, sum)) in w.chunks_exact(k.max(1)).zip(&mut col_sums).enumerate() {
            // Column `col` of panel `col / 16`: 4 depths at a time, 64 bytes apart.
            let base = (col / PANEL) * PANEL * kp + (col % PANEL) * 4;
            // Whole groups as 4-byte moves (a `copy_from_slice` of a run-time length is a
            // `memcpy` call per group: most of the attention's per-head packing time).
            let groups = row.chunks_exact(4);
            let last = groups.remainder();
            for (q, group) in groups.enumerate() {
                let at = base + q * 4 * PANEL;
                let group: &[i8; 4] = group.try_into().expect("a group of 4");
                data[at..at + 4].copy_from_slice(group);
            }
            let at = base + (k / 4) * 4 * PANEL;
            data[at..at + last.len()].copy_from_slice(last);
            *sum = row.iter().map(|&x| x as i32).sum();
        }
        PackedWeights {
            n,
            k,
            kp,
            col_sums,
            panels,
            data,
        }
    }

    fn panel(&self, p: usize) -> *const i8 {
        debug_assert!(p < self.panels);
        self.data[p * PANEL * self.kp..].as_ptr()
    }
}

/// A raw pointer that threads may share because they write disjoint parts.
#[derive(Clone, Copy)]
pub struct SharedMut<T>(pub *mut T);
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// Computes `A · Bᵀ` for `A` (`m × kp` codes, row-major) and calls `epilogue(row, col0, dots)`
/// for every row of every tile, `dots` the raw sums `Σ_k A[row][k] · B[col0 + j][k]` for
/// `j < dots.len()`. Tiles run in parallel on rayon's pool when the product is large; the
/// epilogue must only write the places its `(row, col0..)` own.
pub fn gemm<E>(isa: Isa, a: &[u8], m: usize, b: &PackedWeights, epilogue: E)
where
    E: Fn(usize, usize, &[i32]) + Sync,
{
    gemm_with(isa, a, m, b, true, epilogue)
}

/// The raw dot products of [`gemm`] into `out` (`m × n`, row-major); `parallel: false` keeps
/// the work on the calling thread (when the caller already runs one task per thread).
pub fn gemm_into(isa: Isa, a: &[u8], m: usize, b: &PackedWeights, parallel: bool, out: &mut [i32]) {
    assert!(out.len() >= m * b.n, "out holds m × n");
    let n = b.n;
    let ptr = SharedMut(out.as_mut_ptr());
    gemm_with(
        isa,
        a,
        m,
        b,
        parallel,
        #[inline(always)]
        |row, col0, dots| {
            // SAFETY: each (row, col0..) is written by exactly one tile; `out` holds m × n.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(ptr.get().add(row * n + col0), dots.len())
            };
            dst.copy_from_slice(dots);
        },
    );
}

/// [`gemm`], on rayon's threads only when `parallel`.
pub fn gemm_with<E>(isa: Isa, a: &[u8], m: usize, b: &PackedWeights, parallel: bool, epilogue: E)
where
    E: Fn(usize, usize, &[i32]) + Sync,
{
    gemm_tiles(
        isa,
        a,
        m,
        b,
        parallel,
        #[inline(always)]
        |tile| {
            for r in 0..tile.rows {
                epilogue(tile.row0 + r, tile.col0, tile.row(r));
            }
        },
    );
}

/// One computed tile: rows `row0..row0 + rows`, columns `col0..col0 + width`, raw dot products.
pub struct Tile<'a> {
    /// First row.
    pub row0: usize,
    /// Rows in the tile (at most 2·[`MR`], 32 with AMX).
    pub rows: usize,
    /// First column.
    pub col0: usize,
    /// Columns in the tile.
    pub width: usize,
    dots: &'a [i32],
    stride: usize,
}

impl Tile<'_> {
    /// The dot products of the tile's row `r` (`width` of them).
    #[inline(always)]
    pub fn row(&self, r: usize) -> &[i32] {
        &self.dots[r * self.stride..r * self.stride + self.width]
    }
}

/// [`gemm_with`] with one epilogue call per tile (up to 4 rows × 32 columns, 32 × 32 with AMX)
/// instead of per row: the requantizing epilogues slice their per-column constants once per
/// tile.
pub fn gemm_tiles<E>(isa: Isa, a: &[u8], m: usize, b: &PackedWeights, parallel: bool, epilogue: E)
where
    E: Fn(&Tile) + Sync,
{
    gemm_tiles_strided(isa, a, b.kp, m, b, parallel, epilogue)
}

/// [`gemm_tiles`] for `A` rows `stride ≥ kp` codes apart; the codes between `kp` and `stride`
/// must be zero (AMX reads them against the next panel's weights).
pub fn gemm_tiles_strided<E>(
    isa: Isa,
    a: &[u8],
    stride: usize,
    m: usize,
    b: &PackedWeights,
    parallel: bool,
    epilogue: E,
) where
    E: Fn(&Tile) + Sync,
{
    gemm_tiles_of(
        isa,
        RowsOfA::Strided { codes: a, stride },
        m,
        b,
        parallel,
        epilogue,
    )
}

/// How a kernel finds a row's depth: `count` spans of `kp / count` codes, `jump` codes apart
/// (one span, `count: 1`, for a row that lies in one piece).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// Spans per row.
    pub count: usize,
    /// Codes from the start of one span to the start of the next.
    pub jump: usize,
}

impl Segments {
    /// A row in one piece.
    pub const WHOLE: Segments = Segments { count: 1, jump: 0 };
}

/// Where the rows of `A` lie.
#[derive(Debug, Clone, Copy)]
pub enum RowsOfA<'a> {
    /// Row `r` is `codes[r · stride..][..kp]`, zero from `kp` to `stride`.
    Strided {
        /// The rows.
        codes: &'a [u8],
        /// Codes from one row to the next (`≥ kp`).
        stride: usize,
    },
    /// Row `r` is `spans.count` spans of `kp / spans.count` codes, the first at `offsets[r]`,
    /// each `spans.jump` codes after the previous: a convolution's patches read where they lie
    /// in its (padded) input, one span per kernel row, without im2col. Runs on the vector kernels
    /// (AMX loads rows as whole tiles).
    Gathered {
        /// The (padded) input.
        codes: &'a [u8],
        /// Each row's first span.
        offsets: &'a [usize],
        /// The spans of a row.
        spans: Segments,
    },
}

/// [`gemm_tiles`] over rows of `A` wherever they lie ([`RowsOfA`]), `m` of them.
pub fn gemm_tiles_of<E>(
    isa: Isa,
    a: RowsOfA,
    m: usize,
    b: &PackedWeights,
    parallel: bool,
    epilogue: E,
) where
    E: Fn(&Tile) + Sync,
{
    assert!(
        isa.supported(),
        "{} is not supported on this CPU",
        isa.name()
    );
    let mut isa = isa.for_shape(m, b.n, b.kp);
    let (codes, stride, spans) = match a {
        RowsOfA::Strided { codes, stride } => {
            assert!(stride >= b.kp, "A's rows hold kp codes");
            assert!(
                m == 0 || codes.len() >= (m - 1) * stride + b.kp,
                "A holds m rows of kp codes"
            );
            (codes, stride, Segments::WHOLE)
        }
        RowsOfA::Gathered {
            codes,
            offsets,
            spans,
        } => {
            assert_eq!(offsets.len(), m, "one offset per row of A");
            assert!(
                spans.count > 0 && b.kp.is_multiple_of(4 * spans.count),
                "a row's {} spans are whole depth groups of its {} codes",
                spans.count,
                b.kp
            );
            let last = (spans.count - 1) * spans.jump + b.kp / spans.count;
            assert!(
                offsets.iter().all(|&o| o + last <= codes.len()),
                "every row's spans lie within A"
            );
            if isa == Isa::Amx {
                isa = Isa::vector_best().for_shape(m, b.n, b.kp);
            }
            (codes, 0, spans)
        }
    };
    let offsets = match a {
        RowsOfA::Gathered { offsets, .. } => Some(offsets),
        RowsOfA::Strided { .. } => None,
    };
    let kq = b.kp / 4 / spans.count;
    let [tr, tw] = isa.tile_shape(b.n);
    let col_tiles = b.n.div_ceil(tw);
    let row_blocks = m.div_ceil(tr);
    // Tasks: up to 64 rows × up to 8 column tiles; enough of them to feed the threads, big
    // enough that a B tile serves many rows from cache.
    // Small products (a sequence's 128 rows) get 32-row tasks; column chunks are balanced
    // (12 tiles become 6 + 6, not 8 + 4) so that two threads finish together.
    let task_rows = if m.div_ceil(MR) >= 256 { 64 } else { 32 };
    let rows_per_task = (task_rows / tr).clamp(1, row_blocks.max(1));
    let cols_max = if m <= 2 * MR { 2 } else { 8 };
    let col_tasks = col_tiles.div_ceil(cols_max);
    let cols_per_task = col_tiles.div_ceil(col_tasks.max(1)).max(1);
    let row_tasks = row_blocks.div_ceil(rows_per_task);
    let col_tasks = col_tiles.div_ceil(cols_per_task);
    // The task body (and the epilogue inlined into it) is compiled for the CPU's widest
    // vectors, so requantization loops vectorise at that width.
    let task = |t: usize| {
        crate::simd::wide!({
            let (rt, ct) = (t / col_tasks, t % col_tasks);
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Amx {
                let blocks = rt * rows_per_task..((rt + 1) * rows_per_task).min(row_blocks);
                let tiles = ct * cols_per_task..((ct + 1) * cols_per_task).min(col_tiles);
                amx_task(codes, stride, m, b, blocks, tiles, &epilogue);
                return;
            }
            let mut acc = [0i32; MR * 2 * PANEL];
            for tile in ct * cols_per_task..((ct + 1) * cols_per_task).min(col_tiles) {
                let col0 = tile * tw;
                let width = tw.min(b.n - col0);
                let panel = b.panel(col0 / PANEL);
                for block in rt * rows_per_task..((rt + 1) * rows_per_task).min(row_blocks) {
                    let row0 = block * tr;
                    let rows = tr.min(m - row0);
                    // (A short last block repeats its last row.)
                    let at = |r: usize| {
                        let row = row0 + r.min(rows - 1);
                        match offsets {
                            Some(offsets) => offsets[row],
                            None => row * stride,
                        }
                    };
                    let ptrs: [*const u8; 2 * MR] =
                        std::array::from_fn(|r| codes[at(r)..].as_ptr());
                    // SAFETY: the panel holds kp/4 depth groups of `tw` columns (panels are padded
                    // to an even count) and every row pointer holds its spans (asserted above).
                    unsafe { kernel(isa, tw, ptrs, spans, panel, kq, &mut acc) };
                    if isa.shifts_activations() {
                        // The kernel multiplied (a − 128): add 128 · Σw back.
                        for r in 0..rows {
                            let dots = &mut acc[r * tw..r * tw + width];
                            for (d, s) in dots.iter_mut().zip(&b.col_sums[col0..col0 + width]) {
                                *d += 128 * s;
                            }
                        }
                    }
                    epilogue(&Tile {
                        row0,
                        rows,
                        col0,
                        width,
                        dots: &acc,
                        stride: tw,
                    });
                }
            }
        },)
    };
    let tasks = row_tasks * col_tasks;
    if parallel && tasks > 1 && m * b.n * b.kp >= PARALLEL_MIN_MACS {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// The AMX part of [`gemm_tiles`]: 32-row blocks `blocks` × 32-column tiles `tiles`. A block of
/// 32 rows whose depth is whole 64-code tiles (`kp` or the row stride) is read where it lies;
/// any other is first copied into a scratch of whole depth tiles, zero past `kp` and past the
/// last row, so every tile load is whole and the padding adds nothing.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn amx_task<E>(
    a: &[u8],
    a_stride: usize,
    m: usize,
    b: &PackedWeights,
    blocks: std::ops::Range<usize>,
    tiles: std::ops::Range<usize>,
    epilogue: &E,
) where
    E: Fn(&Tile) + Sync,
{
    let chunks = b.kp.div_ceil(amx::DEPTH);
    let stride = chunks * amx::DEPTH;
    let whole_depth = a_stride >= stride;
    thread_local! {
        /// Row blocks copied into whole depth tiles, kept across calls (a fresh zeroed
        /// allocation per call showed in profiles of convolutions run block by block).
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut scratch = SCRATCH.take();
    let mut acc = [0i32; amx::ROWS * amx::ROWS];
    // SAFETY: AMX is supported (`gemm_tiles` asserts it); released below, before the task ends
    // (the epilogue runs no AMX code of its own).
    unsafe { amx::configure() };
    for block in blocks {
        let row0 = block * amx::ROWS;
        let rows = amx::ROWS.min(m - row0);
        let in_place =
            whole_depth && rows == amx::ROWS && a.len() >= (row0 + rows - 1) * a_stride + stride;
        let (rows_at, rows_stride) = if in_place {
            let block = &a[row0 * a_stride..(row0 + rows - 1) * a_stride + stride];
            (block.as_ptr(), a_stride)
        } else {
            // (The scratch is reused across calls of other depths: every byte is rewritten.)
            scratch.resize(amx::ROWS * stride, 0);
            for (r, dst) in scratch[..amx::ROWS * stride]
                .chunks_exact_mut(stride)
                .enumerate()
            {
                let (codes, pad) = dst.split_at_mut(b.kp);
                if r < rows {
                    codes.copy_from_slice(&a[(row0 + r) * a_stride..][..b.kp]);
                } else {
                    codes.fill(0);
                }
                pad.fill(0);
            }
            (scratch.as_ptr(), stride)
        };
        for tile in tiles.clone() {
            let col0 = tile * 2 * PANEL;
            // SAFETY: the tiles are configured (above); `rows_at` holds 32 rows of `chunks`
            // whole depth tiles, `rows_stride` apart (`a`'s own rows, or the scratch's); the two
            // panels at `col0` exist (panels come in pairs) and the packed data is padded by one
            // depth tile past the last panel.
            unsafe {
                amx::block(
                    rows_at,
                    rows_stride,
                    b.panel(col0 / PANEL),
                    PANEL * b.kp,
                    chunks,
                    &mut acc,
                )
            };
            epilogue(&Tile {
                row0,
                rows,
                col0,
                width: (2 * PANEL).min(b.n - col0),
                dots: &acc,
                stride: amx::ROWS,
            });
        }
    }
    // SAFETY: as above.
    unsafe { amx::release() };
    SCRATCH.set(scratch);
}

/// One tile of the family's [`Isa::tile_shape`] (`width` columns; `MR` rows, the first of
/// `rows`, or all `2·MR`), written row-major into `acc`; each row's depth is `spans.count` spans
/// of `4·kq` codes.
///
/// # Safety
/// `rows[r]` must hold `spans.count` spans of `4·kq` codes, `spans.jump` apart, `panel`
/// `spans.count · kq · 64 · (width / 16)` bytes, and `isa` must be supported.
unsafe fn kernel(
    isa: Isa,
    width: usize,
    all_rows: [*const u8; 2 * MR],
    spans: Segments,
    panel: *const i8,
    kq: usize,
    acc: &mut [i32; MR * 2 * PANEL],
) {
    // (Only AVX-512 VNNI has two shapes.)
    let _ = width;
    let rows = *all_rows.first_chunk::<MR>().expect("2·MR rows");
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if width == PANEL => unsafe {
            x86::tile_avx512vnni_narrow(all_rows, spans, panel, kq, acc)
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { x86::tile_avx512vnni(rows, spans, panel, kq, acc) },
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni => unsafe { x86::tile_avxvnni(rows, spans, panel, kq, acc) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::tile_avx2(rows, spans, panel, kq, acc) },
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => unsafe { arm::tile_neondot(rows, spans, panel, kq, acc) },
        Isa::Amx => unreachable!("AMX runs whole blocks (`amx_task`)"),
        _ => unsafe { portable::tile(rows, spans, panel, kq, acc) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: reproducible test data without a dependency.
    pub(crate) fn codes(seed: u64, n: usize, lo: i32, hi: i32) -> Vec<i32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E3779B97F4A7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
                z ^= z >> 31;
                lo + (z % (hi - lo + 1) as u64) as i32
            })
            .collect()
    }

    fn naive(a: &[u8], w: &[i8], m: usize, n: usize, k: usize) -> Vec<i32> {
        let mut c = vec![0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|d| a[i * k + d] as i32 * w[j * k + d] as i32)
                    .sum();
            }
        }
        c
    }

    fn run(isa: Isa, a: &[u8], w: &[i8], m: usize, n: usize, k: usize) -> Vec<i32> {
        let packed = PackedWeights::pack(w, n, k);
        let kp = packed.kp;
        let mut padded = vec![0u8; m * kp];
        for i in 0..m {
            padded[i * kp..i * kp + k].copy_from_slice(&a[i * k..(i + 1) * k]);
        }
        let c = std::sync::Mutex::new(vec![i32::MIN; m * n]);
        gemm(isa, &padded, m, &packed, |row, col0, dots| {
            let mut c = c.lock().unwrap();
            c[row * n + col0..row * n + col0 + dots.len()].copy_from_slice(dots);
        });
        c.into_inner().unwrap()
    }

    /// `A · Bᵀ` for `m` rows of `A` wherever they lie, as [`gemm_tiles_of`] hands its tiles out.
    fn products_of(isa: Isa, a: RowsOfA, m: usize, b: &PackedWeights, parallel: bool) -> Vec<i32> {
        let n = b.n;
        let c = std::sync::Mutex::new(vec![i32::MIN; m * n]);
        gemm_tiles_of(isa, a, m, b, parallel, |tile| {
            let mut c = c.lock().unwrap();
            for r in 0..tile.rows {
                let at = (tile.row0 + r) * n + tile.col0;
                c[at..at + tile.width].copy_from_slice(tile.row(r));
            }
        });
        c.into_inner().unwrap()
    }

    /// Random activation codes (`m × k`) and weight codes (`n × k`), extreme codes included:
    /// 0/255 activations, ±127 weights.
    fn operands(seed: u64, m: usize, n: usize, k: usize) -> (Vec<u8>, Vec<i8>) {
        let a = codes(seed, m * k, 0, 255).into_iter().map(|x| x as u8);
        let w = codes(seed + 1, n * k, -127, 127)
            .into_iter()
            .map(|x| x as i8);
        (a.collect(), w.collect())
    }

    #[test]
    fn every_supported_kernel_equals_the_naive_product_on_odd_shapes() {
        let sizes = [1usize, 3, 17, 63, 65, 129];
        for isa in Isa::available() {
            for (t, &m) in sizes.iter().enumerate() {
                for &n in &sizes {
                    let k = sizes[(t + n) % sizes.len()];
                    let (a, w) = operands((m * 1000 + n * 10 + k) as u64, m, n, k);
                    assert_eq!(
                        run(isa, &a, &w, m, n, k),
                        naive(&a, &w, m, n, k),
                        "{} m={m} n={n} k={k}",
                        isa.name()
                    );
                }
            }
        }
    }

    /// Products large enough for every family (AMX takes only those of [`AMX_MIN_MACS`] or
    /// more), with row, column and depth tails: several 32-row blocks and 64-code depth tiles,
    /// threads over tiles; depths of whole tiles too (AMX reads those rows in place, and
    /// stages only a last block of fewer rows).
    #[test]
    fn every_supported_kernel_equals_the_naive_product_on_large_odd_shapes() {
        let shapes = [
            (161, 161, 257),
            (97, 200, 333),
            (300, 45, 520),
            (100, 70, 640),
            (64, 96, 704),
        ];
        for (m, n, k) in shapes {
            assert!(
                m * n * padded_depth(k) >= AMX_MIN_MACS,
                "{m}×{n}×{k} too small"
            );
            let (a, w) = operands((m * 7 + n * 3 + k) as u64, m, n, k);
            let expected = naive(&a, &w, m, n, k);
            for isa in Isa::available() {
                assert_eq!(
                    isa.for_shape(m, n, padded_depth(k)),
                    isa,
                    "{} does not run {m}×{n}×{k} itself",
                    isa.name()
                );
                assert_eq!(
                    run(isa, &a, &w, m, n, k),
                    expected,
                    "{} m={m} n={n} k={k}",
                    isa.name()
                );
            }
        }
    }

    /// AMX copies row blocks it cannot read in place into a scratch kept per thread across
    /// calls: a shallower product after a deeper one, on the same thread, must not read the
    /// deeper one's codes past its own depth. Rows laid wider apart than `kp` (zero between, as
    /// a convolution's patches for AMX) give the same products, read in place or copied.
    #[test]
    fn products_of_other_depths_and_row_strides_on_one_thread_stay_exact() {
        for isa in Isa::available() {
            for (m, n, k) in [(33, 200, 700), (97, 200, 333), (161, 45, 257)] {
                let (a, w) = operands((m + n + k) as u64, m, n, k);
                let expected = naive(&a, &w, m, n, k);
                let packed = PackedWeights::pack(&w, n, k);
                let kp = packed.kp;
                for stride in [kp, kp.next_multiple_of(64), kp + 4] {
                    let mut strided = vec![0u8; m * stride];
                    for (dst, src) in strided.chunks_exact_mut(stride).zip(a.chunks_exact(k)) {
                        dst[..k].copy_from_slice(src);
                    }
                    let rows = RowsOfA::Strided {
                        codes: &strided,
                        stride,
                    };
                    assert_eq!(
                        products_of(isa, rows, m, &packed, false),
                        expected,
                        "{} m={m} n={n} k={k} stride={stride}",
                        isa.name()
                    );
                }
            }
        }
    }

    /// Rows gathered from spans where they lie (a convolution's patches read in place from its
    /// input, spans overlapping between rows) give the products of the same rows copied out
    /// whole; the largest shape is one AMX would take whole, and runs on the vector kernels.
    #[test]
    fn gathered_rows_equal_the_same_rows_copied_out() {
        for (m, n, count, span) in [
            (37, 16, 3, 48),
            (9, 40, 1, 8),
            (70, 33, 5, 12),
            (300, 64, 3, 64),
        ] {
            let k = count * span;
            let jump = 2 * span + 4;
            // One row of input codes, and weights of that depth (the first `n × k` used).
            let (input, w) = operands((m * n + k) as u64, 1, n, m * 4 + count * jump);
            // Row `r` starts 4 codes after row `r − 1`: rows share most of their codes.
            let offsets: Vec<usize> = (0..m).map(|r| r * 4).collect();
            let mut a = Vec::with_capacity(m * k);
            for &at in &offsets {
                for s in 0..count {
                    a.extend_from_slice(&input[at + s * jump..][..span]);
                }
            }
            let w = &w[..n * k];
            let expected = naive(&a, w, m, n, k);
            let packed = PackedWeights::pack(w, n, k);
            let spans = Segments { count, jump };
            for isa in Isa::available() {
                let rows = RowsOfA::Gathered {
                    codes: &input,
                    offsets: &offsets,
                    spans,
                };
                assert_eq!(
                    products_of(isa, rows, m, &packed, true),
                    expected,
                    "{} m={m} n={n} spans={count}×{span}",
                    isa.name()
                );
            }
        }
    }

    #[test]
    fn extreme_codes_do_not_saturate() {
        // 255 × −127 everywhere: the AVX2 path's pairwise i16 sums are at their limit.
        let (m, n, k) = (5, 33, 260);
        let a = vec![255u8; m * k];
        let w = vec![-127i8; n * k];
        let w2: Vec<i8> = (0..n * k)
            .map(|i| if i % 2 == 0 { 127 } else { -127 })
            .collect();
        for isa in Isa::available() {
            assert_eq!(
                run(isa, &a, &w, m, n, k),
                naive(&a, &w, m, n, k),
                "{}",
                isa.name()
            );
            assert_eq!(
                run(isa, &a, &w2, m, n, k),
                naive(&a, &w2, m, n, k),
                "{}",
                isa.name()
            );
            let zeros = vec![0u8; m * k];
            assert_eq!(
                run(isa, &zeros, &w, m, n, k),
                vec![0; m * n],
                "{}",
                isa.name()
            );
        }
    }

    #[test]
    fn this_machine_runs_more_than_the_portable_kernel_when_it_can() {
        let names: Vec<_> = Isa::available().iter().map(|i| i.name()).collect();
        eprintln!(
            "kernels on this CPU: {names:?}; best: {}",
            Isa::best().name()
        );
        assert!(names.contains(&"portable"));
    }
}
