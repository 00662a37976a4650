//! llama.cpp's tokenizer golden vectors (its test-tokenizer-0): vocab-only GGUFs
//! `ggml-vocab-<name>.gguf` with `.inp` (test texts separated by "\n__ggml_vocab_test__\n") and
//! `.out` (one line of space-separated token ids per text), tokenized without BOS/EOS and
//! without parsing special-token text. Our tokenizer, rebuilt from each GGUF's metadata by
//! `text/gguf_tokenizer.rs`, must produce every vector exactly.

use std::path::{Path, PathBuf};

use mlx_serving_core::models::gguf::GgufModelFile;
use mlx_serving_core::text::gguf_tokenizer::tokenizer_from_gguf;

/// Vocabularies whose tokenizer kind and pre-tokenizer we rebuild, with every vector required.
const SUPPORTED: &[&str] = &[
    "gpt-2", "mpt", "llama-bpe", "qwen2", "qwen35", "starcoder", "refact", "command-r", "deepseek-coder", "falcon",
    "llama-spm", "phi-3",
];

fn vocab_dir() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/fixtures/llama-cpp/vocab");
    assert!(p.is_dir(), "{} missing: run scripts/models/fetch_llama_cpp_models.sh (npm test does)", p.display());
    p
}

/// (text, expected ids) pairs of one vocab, parsed as test-tokenizer-0 does.
fn vectors(gguf: &Path) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(gguf.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(gguf.with_extension("gguf.out")).unwrap();
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop(); // the file ends with the separator
    }
    let ids: Vec<Vec<u32>> =
        out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len(), ids.len(), "{}: .inp and .out disagree", gguf.display());
    texts.into_iter().map(str::to_owned).zip(ids).collect()
}

/// Passed / total vectors of one vocab, or why it cannot be tokenized.
fn check(name: &str) -> Result<(usize, usize, Vec<String>), String> {
    let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let g = GgufModelFile::open(&path).map_err(|e| e.message)?;
    let tok = tokenizer_from_gguf(&g).map_err(|e| e.message)?;
    let cases = vectors(&path);
    let mut failures = vec![];
    for (text, want) in &cases {
        let got = tok.encode(text, false).map_err(|e| e.message)?;
        if &got != want {
            failures.push(format!("{name}: {text:?}\n   ours: {got:?}\n   want: {want:?}"));
        }
    }
    Ok((cases.len() - failures.len(), cases.len(), failures))
}

#[test]
fn gguf_tokenizers_reproduce_llama_cpp_golden_vectors() {
    let mut names: Vec<String> = std::fs::read_dir(vocab_dir())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_suffix(".gguf.out").and_then(|s| s.strip_prefix("ggml-vocab-")).map(str::to_owned)
        })
        .collect();
    names.sort();
    let mut problems = vec![];
    for name in &names {
        match check(name) {
            Ok((ok, n, failures)) => {
                eprintln!("{name:>16}: {ok}/{n}");
                failures.iter().take(3).for_each(|f| eprintln!("    {f}"));
                if SUPPORTED.contains(&name.as_str()) {
                    problems.extend(failures);
                }
            }
            Err(why) => {
                eprintln!("{name:>16}: not loadable: {why}");
                if SUPPORTED.contains(&name.as_str()) {
                    problems.push(format!("{name}: {why}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} failures:\n{}", problems.len(), problems.join("\n"));
}
