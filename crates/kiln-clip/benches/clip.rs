//! Criterion benches of kiln-clip: the ViT-B/32 vision tower on a batch of 4 images, the text
//! tower on 16 captions, and preprocessing a 512x512 photo.

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln_clip::{ClipConfig, PreprocessConfig, RgbImage, TokenBatch, preprocess};

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    device.seed(0);
    let config = ClipConfig::from_json(r#"{"model_type": "clip"}"#, "defaults").expect("config");
    let model = config.init(&device);
    let pixels = Tensor::<4>::random([4, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let mut g = c.benchmark_group("clip_vit_b32");
    g.sample_size(10);
    g.bench_function("image_features_batch4", |b| {
        b.iter(|| {
            model
                .image_features(pixels.clone())
                .expect("forward")
                .into_data()
        })
    });
    let rows: Vec<Vec<u32>> = (0..16)
        .map(|i| (0..12 + i % 5).map(|t| 400 + t as u32).collect())
        .collect();
    let tokens = TokenBatch::from_rows(&rows, 49407).expect("tokens");
    g.bench_function("text_features_batch16", |b| {
        b.iter(|| model.text_features(&tokens).expect("forward").into_data())
    });
    g.finish();
    let img = RgbImage::new(
        512,
        512,
        (0..512 * 512 * 3).map(|i| (i % 251) as u8).collect(),
    )
    .expect("image");
    let pp = PreprocessConfig::default();
    c.bench_function("preprocess_512_to_224", |b| {
        b.iter(|| preprocess(&img, &pp).expect("preprocess"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
