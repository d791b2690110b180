//! Measures the machine's memory read bandwidth the way a decode step reads weights: every thread
//! of rayon's pool (`RAYON_NUM_THREADS`) streams its share of a buffer far larger than the caches
//! and sums it. Prints one JSON line with the best of `REPS` passes in GB/s (10^9 bytes).
//!
//!     cargo run --release -p kiln-backend --example membw -- [MIB=1024] [REPS=7]

use std::time::Instant;

use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(1024), |a| a.parse())?;
    let reps: usize = args.next().map_or(Ok(7), |a| a.parse())?;
    let n = mib * 1024 * 1024 / 8;
    // Distinct values, written once, so every page is resident and nothing can be folded away.
    let buf: Vec<u64> = (0..n as u64)
        .into_par_iter()
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let chunk = 1 << 16;
    let mut best = f64::MAX;
    let mut checksum = 0u64;
    for _ in 0..reps {
        let t = Instant::now();
        let s = buf
            .par_chunks(chunk)
            .map(|c| {
                // Eight independent lanes keep the loads in flight.
                let mut acc = [0u64; 8];
                for b in c.chunks_exact(8) {
                    for l in 0..8 {
                        acc[l] = acc[l].wrapping_add(b[l]);
                    }
                }
                acc.iter().fold(0u64, |a, &b| a.wrapping_add(b))
            })
            .reduce(|| 0, u64::wrapping_add);
        best = best.min(t.elapsed().as_secs_f64());
        checksum = checksum.wrapping_add(s);
    }
    let bytes = (n * 8) as f64;
    println!(
        "{{\"threads\": {}, \"bytes\": {}, \"read_gb_per_s\": {:.2}, \"checksum\": {}}}",
        rayon::current_num_threads(),
        n * 8,
        bytes / best / 1e9,
        checksum
    );
    Ok(())
}
