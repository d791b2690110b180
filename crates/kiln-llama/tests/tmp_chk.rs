use kiln_llama::gguf::{GgufFile, tokenizer_from_gguf};
#[test]
fn chk() {
    let inp = std::fs::read_to_string(std::env::var("HOME").unwrap() + "/.cache/kiln/assets/vocab/ggml-vocab-llama-bpe.gguf.inp").unwrap();
    let parts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let chk = parts[parts.len() - 2];
    for f in ["SmolLM2-135M-Instruct.Q4_1.gguf", "vocab/ggml-vocab-llama-bpe.gguf"] {
        let g = GgufFile::open(std::env::var("HOME").unwrap() + "/.cache/kiln/assets/" + f).unwrap();
        let (tok, _) = tokenizer_from_gguf(&g).unwrap();
        let ids = tok.encode(chk, true).unwrap().get_ids().to_vec();
        std::fs::write(format!("/tmp/kq/chk_{}.txt", f.replace('/', "_")), format!("{:?}", ids)).unwrap();
    }
}
