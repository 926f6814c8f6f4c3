//! Intel AMX (`tdpbusd` on tile registers): 32 rows × 32 columns per call, from 16×64-byte `A`
//! tiles and `B` tiles that are exactly the packed panels' layout (16 columns × 4 depths, 64
//! bytes per depth group, so 16 depth groups of a panel are one tile). Sapphire Rapids and later
//! Xeons; the OS must grant the tile state to the process (Linux 5.16+, [`available`]).
//!
//! Stable Rust has no AMX intrinsics, so the instructions are inline assembly. The compiler
//! never uses tile registers itself, so tile state set by one `asm!` block is still there in the
//! next one on the same thread.

use std::arch::asm;
use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
use std::sync::OnceLock;

/// Rows (and columns) one [`block`] call computes.
pub const ROWS: usize = 32;
/// Depth bytes per `A` tile row (and `B` tile rows per tile × 4): the `K` step of one `tdpbusd`.
pub const DEPTH: usize = 64;

/// Whether the CPU has AMX-TILE and AMX-INT8 and Linux lets this process use the tile state
/// (asked once, with `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        // CPUID leaf 7: AMX-TILE (EDX bit 24), AMX-INT8 (bit 25); leaf 1: OSXSAVE (ECX bit 27).
        if __cpuid(0).eax < 7 {
            return false;
        }
        let leaf7 = __cpuid_count(7, 0);
        let (tile, int8) = (leaf7.edx >> 24 & 1 == 1, leaf7.edx >> 25 & 1 == 1);
        let osxsave = __cpuid_count(1, 0).ecx >> 27 & 1 == 1;
        if !(tile && int8 && osxsave) {
            return false;
        }
        // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS saves the tile state at all.
        // SAFETY: XGETBV exists where OSXSAVE is set (checked above).
        let xcr0 = unsafe { _xgetbv(0) };
        if xcr0 >> 17 & 3 != 3 {
            return false;
        }
        request_tile_permission()
    })
}

/// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023,
/// XFEATURE_XTILEDATA = 18)`), which it grants process-wide; `false` where it refuses or is not
/// Linux.
fn request_tile_permission() -> bool {
    #[cfg(target_os = "linux")]
    {
        const SYS_ARCH_PRCTL: usize = 158;
        const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
        const XFEATURE_XTILEDATA: usize = 18;
        let ret: isize;
        // SAFETY: a plain system call; `syscall` clobbers rcx and r11, declared below.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The tile configuration `ldtilecfg` reads (palette 1): tiles 0–3 hold the 2×2 `C` blocks
/// (16 rows × 16 `i32`), 4–5 two `A` tiles (16 rows × 64 codes), 6–7 two `B` tiles (16 depth
/// groups × 16 columns × 4 depths).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

static CONFIG: TileConfig = {
    let mut colsb = [0u16; 16];
    let mut rows = [0u8; 16];
    let mut t = 0;
    while t < 8 {
        colsb[t] = 64;
        rows[t] = 16;
        t += 1;
    }
    TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb,
        rows,
    }
};

/// Loads the tile configuration on this thread, for the [`block`] calls that follow until
/// [`release`].
///
/// # Safety
/// [`available`] returned true.
pub unsafe fn configure() {
    // SAFETY: AMX is available (the caller's contract); reads the 64-byte configuration.
    unsafe {
        asm!(
            "ldtilecfg [{cfg}]",
            cfg = in(reg) &CONFIG as *const TileConfig,
            options(nostack, readonly),
        );
    }
}

/// Returns this thread's tiles to their initial state, so context switches save no tile data.
///
/// # Safety
/// [`available`] returned true.
pub unsafe fn release() {
    // SAFETY: AMX is available (the caller's contract).
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// `acc` (32 × 32, row-major) = `A · B` for 32 rows of `a` (`stride` bytes apart, `chunks · 64`
/// codes each) and the 32 columns of the two panels at `panel`, `64 · 16 · chunks` bytes each
/// (the second right after the first's `panel_len` bytes).
///
/// # Safety
/// [`configure`] ran on this thread since the last [`release`]; `a` holds
/// `31 · stride + 64 · chunks` bytes; both panels may be read for `1024 · chunks` bytes each
/// (past their depth, the matching `A` codes must be zero).
pub unsafe fn block(
    a: *const u8,
    stride: usize,
    panel: *const i8,
    panel_len: usize,
    chunks: usize,
    acc: &mut [i32; ROWS * ROWS],
) {
    let a_low = unsafe { a.add(16 * stride) };
    let next = unsafe { panel.add(panel_len) };
    // Rows of `C` are 32 `i32` apart in `acc`.
    let c_stride = ROWS * 4;
    let c = acc.as_mut_ptr();
    // SAFETY: the caller guarantees AMX and the extents; each asm block only touches tile
    // registers and the memory named by its operands.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem),
        );
        for j in 0..chunks {
            let (a0, a1) = (a.add(j * DEPTH), a_low.add(j * DEPTH));
            let (b0, b1) = (panel.add(j * 1024), next.add(j * 1024));
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a0 = in(reg) a0,
                a1 = in(reg) a1,
                b0 = in(reg) b0,
                b1 = in(reg) b1,
                sa = in(reg) stride,
                sb = in(reg) 64usize,
                options(nostack, readonly),
            );
        }
        asm!(
            "tilestored [{c00} + {sc}*1], tmm0",
            "tilestored [{c01} + {sc}*1], tmm1",
            "tilestored [{c10} + {sc}*1], tmm2",
            "tilestored [{c11} + {sc}*1], tmm3",
            c00 = in(reg) c,
            c01 = in(reg) c.add(16),
            c10 = in(reg) c.add(16 * ROWS),
            c11 = in(reg) c.add(16 * ROWS + 16),
            sc = in(reg) c_stride,
            options(nostack),
        );
    }
}

/// `iters` rounds of 4 independent `tdpbusd` (16 × 16 × 64 multiply-adds each) on tiles loaded
/// once: the instruction's throughput bound, for measuring the machine's int8 peak.
///
/// # Safety
/// [`available`] returned true.
pub unsafe fn spin(iters: usize) -> i32 {
    let a = [1u8; 16 * DEPTH];
    let b = [2i8; 16 * DEPTH];
    let mut out = [0i32; 16 * 16];
    unsafe {
        configure();
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{b} + {s}*1]",
            a = in(reg) a.as_ptr(),
            b = in(reg) b.as_ptr(),
            s = in(reg) 64usize,
            options(nostack, readonly),
        );
        for _ in 0..iters {
            asm!(
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm6",
                "tdpbusd tmm2, tmm4, tmm6",
                "tdpbusd tmm3, tmm4, tmm6",
                options(nostack, nomem),
            );
        }
        asm!(
            "tilestored [{o} + {s}*1], tmm3",
            o = in(reg) out.as_mut_ptr(),
            s = in(reg) 64usize,
            options(nostack),
        );
        release();
    }
    out[0]
}

/// Multiply-adds of one [`spin`] round.
pub const SPIN_MACS: f64 = 4.0 * 16.0 * 16.0 * 64.0;
