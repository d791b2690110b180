use kiln_backend::kernels::*;
use std::time::Instant;
fn main() {
    let (rows, cols) = (std::env::var("R").map(|v| v.parse().unwrap()).unwrap_or(576usize), std::env::var("C").map(|v| v.parse().unwrap()).unwrap_or(1536usize));
    for format in [WeightFormat::Q4_1, WeightFormat::Q8_0, WeightFormat::F16] {
        let len = format.row_bytes(cols).unwrap() * rows;
        let bytes: Vec<u8> = (0..len)
            .map(|i| {
                if i % format.block_bytes() == 1 || i % format.block_bytes() == 3 {
                    0x20
                } else {
                    (i * 7) as u8
                }
            })
            .collect();
        let w = QuantMatrix::new(format, rows, cols, bytes).unwrap();
        let x: Vec<f32> = (0..cols).map(|i| i as f32 / 1000.0).collect();
        let mut y = vec![0.0; rows];
        let mut s = Scratch::new();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for path in SimdPath::supported() {
                    for _ in 0..100 {
                        matvec_with(path, &w, &x, &mut y, &mut s);
                    }
                    let t = Instant::now();
                    let n = 2000;
                    for _ in 0..n {
                        matvec_with(path, &w, &x, &mut y, &mut s);
                    }
                    let dt = t.elapsed().as_secs_f64() / n as f64;
                    let t = Instant::now();
                    for _ in 0..n {
                        matmul_with(path, &w, &x, 1, &mut y, &mut s);
                    }
                    let dm = t.elapsed().as_secs_f64() / n as f64;
                    println!(
                        "{format} threads {threads} {path:?}: matvec {:.1} us  matmul1 {:.1} us",
                        dt * 1e6,
                        dm * 1e6
                    );
                }
            });
        }
    }
}
#[allow(dead_code)]
fn unused() {}
