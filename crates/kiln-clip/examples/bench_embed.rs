//! Image embeddings per second of a ViT-B/32-shaped CLIP (random weights, transformers' default
//! `CLIPConfig`) on preprocessed 224x224 pixel batches; prints one JSON line. The peer script
//! `tools/bench_clip_peers.py` measures transformers on the same shapes; `scripts/bench-clip.sh`
//! runs both.
//!
//!     cargo run --release -p kiln-clip --example bench_embed -- [BATCH] [ROUNDS]

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use kiln_clip::ClipConfig;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let device = Device::flex();
    device.seed(0);
    let config = ClipConfig::from_json(r#"{"model_type": "clip"}"#, "defaults")?;
    let model = config.init(&device);
    let pixels = Tensor::<4>::random(
        [batch, 3, 224, 224],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    // Warm-up.
    let _ = model.image_features(pixels.clone())?.into_data();
    let started = Instant::now();
    for _ in 0..rounds {
        let _ = model.image_features(pixels.clone())?.into_data();
    }
    let secs = started.elapsed().as_secs_f64();
    let ips = (batch * rounds) as f64 / secs;
    println!(
        "{{\"engine\": \"kiln\", \"batch\": {batch}, \"rounds\": {rounds}, \"images_per_second\": {ips:.2}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
    Ok(())
}
