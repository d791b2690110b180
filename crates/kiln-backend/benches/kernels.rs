//! Kernel benchmarks: matvec at SmolLM2-135M's shapes per weight format, batched matmul, and the
//! machine's streaming read bandwidth (the bound for decode).
//!
//! `cargo bench -p kiln-backend --bench kernels` prints a summary table first (GB/s of weight bytes,
//! GFLOP/s, for weights hot in cache and cold — rotated through ≥ 256 MiB of copies, as in decoding a
//! model larger than the last-level cache), then runs the criterion groups. Set `KILN_BENCH_SUMMARY=0`
//! to skip the table, `KILN_BENCH_SUMMARY=only` to print only the table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kiln_backend::kernels::{
    QuantMatrix, Scratch, SimdPath, WeightFormat, matmul_into, matvec_into,
};
use rayon::prelude::*;

/// (rows, cols) of SmolLM2-135M's matrices: attention/MLP projections and the LM head.
const SHAPES: [(usize, usize); 3] = [(576, 1536), (1536, 576), (49152, 576)];
const COLD_BYTES: usize = 256 << 20;

fn matrix(format: WeightFormat, rows: usize, cols: usize, seed: u64) -> QuantMatrix {
    let len = format.row_bytes(cols).unwrap() * rows;
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len);
    let bb = format.block_bytes();
    for i in 0..len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let mut b = s as u8;
        // Keep scales and floats finite and small: patch the high byte of each f16/bf16/f32.
        let k = i % bb;
        match format {
            WeightFormat::F32 | WeightFormat::Nf4 if k == 3 => b = 0x3C,
            WeightFormat::F16 | WeightFormat::BF16 if k == 1 => b &= 0x3C,
            WeightFormat::Q4_0 | WeightFormat::Q8_0 if k == 1 => b = 0x20,
            WeightFormat::Q4_1 if k == 1 || k == 3 => b = 0x20,
            _ => {}
        }
        bytes.push(b);
    }
    QuantMatrix::new(format, rows, cols, bytes).unwrap()
}

/// Enough copies of the matrix (at distinct addresses) to overflow the caches (L3 is 32 MiB here).
fn copies(format: WeightFormat, rows: usize, cols: usize) -> Vec<QuantMatrix> {
    let first = matrix(format, rows, cols, 1);
    let n = COLD_BYTES.div_ceil(first.bytes().len()).max(2);
    (0..n)
        .map(|_| QuantMatrix::new(format, rows, cols, first.bytes().to_vec()).unwrap())
        .collect()
}

fn median_secs(mut f: impl FnMut(), min_iters: usize, min_time: Duration) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_iters || start.elapsed() < min_time {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
        if times.len() > 100_000 {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Streaming read of a 1 GiB buffer on the rayon pool: the machine's memory bandwidth, bytes/s.
fn read_bandwidth(buf: &[u64]) -> f64 {
    let secs = median_secs(
        || {
            let s: u64 = buf
                .par_chunks(1 << 16)
                .map(|c| {
                    let mut acc = [0u64; 8];
                    for x in c.chunks_exact(8) {
                        for k in 0..8 {
                            acc[k] = acc[k].wrapping_add(x[k]);
                        }
                    }
                    acc.iter().fold(0u64, |a, &b| a.wrapping_add(b))
                })
                .reduce(|| 0, u64::wrapping_add);
            black_box(s);
        },
        5,
        Duration::from_secs(2),
    );
    (buf.len() * 8) as f64 / secs
}

fn gib_buffer() -> Vec<u64> {
    (0..(1usize << 27) as u64).collect()
}

fn summary() {
    let threads = rayon::current_num_threads();
    println!(
        "kernels summary: SIMD path {:?}, {threads} rayon threads",
        SimdPath::detect()
    );
    let buf = gib_buffer();
    let bw = read_bandwidth(&buf);
    drop(buf);
    println!(
        "memory read bandwidth (1 GiB, {threads} threads): {:.1} GB/s",
        bw / 1e9
    );
    println!(
        "{:<6} {:>13} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "format", "shape", "hot us", "hot GB/s", "cold us", "cold GB/s", "GFLOP/s", "%bw"
    );
    let mut scratch = Scratch::new();
    for (rows, cols) in SHAPES {
        for format in WeightFormat::ALL {
            let ms = copies(format, rows, cols);
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let mut y = vec![0.0f32; rows];
            let bytes = ms[0].bytes().len() as f64;
            let hot = median_secs(
                || matvec_into(&ms[0], &x, &mut y, &mut scratch),
                20,
                Duration::from_millis(300),
            );
            let mut k = 0;
            let cold = median_secs(
                || {
                    k = (k + 1) % ms.len();
                    matvec_into(&ms[k], &x, &mut y, &mut scratch);
                },
                20,
                Duration::from_millis(600),
            );
            let flops = 2.0 * (rows * cols) as f64;
            println!(
                "{:<6} {:>13} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>7.0}%",
                format.to_string(),
                format!("{rows}x{cols}"),
                hot * 1e6,
                bytes / hot / 1e9,
                cold * 1e6,
                bytes / cold / 1e9,
                flops / hot / 1e9,
                100.0 * bytes / cold / bw,
            );
        }
    }
    println!("matmul (batched; GFLOP/s, weights hot):");
    for (rows, cols) in [(1536, 576), (576, 1536)] {
        for format in [
            WeightFormat::Q4_0,
            WeightFormat::Q4_1,
            WeightFormat::Q8_0,
            WeightFormat::Nf4,
            WeightFormat::F32,
        ] {
            let w = matrix(format, rows, cols, 1);
            let mut line = format!("{:<6} {:>13}", format.to_string(), format!("{rows}x{cols}"));
            for n in [1, 8, 64] {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i % 97) as f32 - 48.0) / 48.0)
                    .collect();
                let mut y = vec![0.0f32; n * rows];
                let t = median_secs(
                    || matmul_into(&w, &x, n, &mut y, &mut scratch),
                    10,
                    Duration::from_millis(300),
                );
                line += &format!("  n={n}: {:>6.1}", 2.0 * (n * rows * cols) as f64 / t / 1e9);
            }
            println!("{line}");
        }
    }
}

fn criterion_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("matvec_cold");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let mut scratch = Scratch::new();
    for (rows, cols) in SHAPES {
        for format in WeightFormat::ALL {
            let ms = copies(format, rows, cols);
            let x: Vec<f32> = (0..cols).map(|i| (i % 7) as f32 - 3.0).collect();
            let mut y = vec![0.0f32; rows];
            g.throughput(Throughput::Bytes(ms[0].bytes().len() as u64));
            let mut k = 0;
            g.bench_function(
                BenchmarkId::new(format.to_string(), format!("{rows}x{cols}")),
                |b| {
                    b.iter(|| {
                        k = (k + 1) % ms.len();
                        matvec_into(&ms[k], &x, &mut y, &mut scratch);
                    });
                },
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("matmul");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for format in [
        WeightFormat::Q4_0,
        WeightFormat::Q4_1,
        WeightFormat::Q8_0,
        WeightFormat::Nf4,
    ] {
        let (rows, cols) = (1536, 576);
        let w = matrix(format, rows, cols, 1);
        for n in [8, 64] {
            let x: Vec<f32> = (0..n * cols).map(|i| (i % 5) as f32 - 2.0).collect();
            let mut y = vec![0.0f32; n * rows];
            g.throughput(Throughput::Elements((2 * n * rows * cols) as u64));
            g.bench_function(
                BenchmarkId::new(format.to_string(), format!("{rows}x{cols}xn{n}")),
                |b| {
                    b.iter(|| matmul_into(&w, &x, n, &mut y, &mut scratch));
                },
            );
        }
    }
    g.finish();

    let buf = gib_buffer();
    let mut g = c.benchmark_group("memory");
    g.sample_size(10)
        .throughput(Throughput::Bytes((buf.len() * 8) as u64));
    g.bench_function("read_1GiB", |b| {
        b.iter(|| {
            buf.par_chunks(1 << 16)
                .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
                .reduce(|| 0, u64::wrapping_add)
        });
    });
    g.finish();
}

fn main() {
    let mode = std::env::var("KILN_BENCH_SUMMARY").unwrap_or_default();
    // Under `cargo test --benches` criterion runs each benchmark once; skip the long table there.
    let testing = std::env::args().any(|a| a == "--test");
    if mode != "0" && !testing {
        // Called from a thread outside the rayon pool, every parallel call pays for handing the job
        // to the pool and waking the caller afterwards; a decode loop should run inside the pool
        // (`ThreadPool::install`), so the table is measured both ways.
        println!("== called from outside the rayon pool ==");
        summary();
        println!("== called from inside the rayon pool (ThreadPool::install) ==");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .build()
            .expect("rayon pool");
        pool.install(summary);
    }
    if mode == "only" {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
