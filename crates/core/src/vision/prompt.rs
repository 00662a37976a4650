//! Vision prompt formatting (spec §15 "createVisionGenerator prompt formatting"): a plain prompt
//! becomes one user turn rendered with the model's chat template, its content a list of parts
//! in the family's order (Qwen2-VL: the text, then one `{type: 'image'}` per image; Qwen2.5-VL:
//! images first), as mlx-vlm's `apply_chat_template(…, num_images=N)` builds it. A prompt that
//! already contains the image token is used verbatim. Then each image token is expanded to the
//! number of features its image produces, and the text is tokenized without added specials.

use serde_json::{json, Value};

use crate::error::{EngineError, EngineResult};
use crate::text::chat_template::render_chat_values;
use crate::text::TextTokenizer;

/// The text the template sees for the user turn, or the verbatim prompt.
pub fn render_prompt(tok: &TextTokenizer, template: Option<&str>, prompt: &str, image_token: &str, num_images: usize, images_first: bool) -> EngineResult<String> {
    if prompt.contains(image_token) {
        return Ok(prompt.to_string());
    }
    let Some(template) = template else {
        // No template: the image placeholders, then the text (what mlx-vlm falls back to).
        return Ok(format!("{}{prompt}", image_token.repeat(num_images)));
    };
    let mut content: Vec<Value> = vec![json!({"type": "text", "text": prompt, "content": prompt})];
    let images = (0..num_images).map(|_| json!({"type": "image"}));
    if images_first {
        content.splice(0..0, images);
    } else {
        content.extend(images);
    }
    let messages = json!([{"role": "user", "content": content}]);
    render_chat_values(template, &messages, true, tok.bos_token(), tok.eos_token())
}

/// Replaces the k-th occurrence of `image_token` by `counts[k]` copies and tokenizes.
pub fn expand_and_encode(tok: &TextTokenizer, text: &str, image_token: &str, counts: &[usize]) -> EngineResult<Vec<u32>> {
    let found = text.matches(image_token).count();
    if found != counts.len() {
        return Err(EngineError::generation(format!(
            "The prompt has {found} image placeholders ({image_token}) for {} images",
            counts.len()
        )));
    }
    let mut out = String::with_capacity(text.len() + counts.iter().sum::<usize>() * image_token.len());
    let mut rest = text;
    for &n in counts {
        let at = rest.find(image_token).expect("counted above");
        out.push_str(&rest[..at]);
        out.push_str(&image_token.repeat(n));
        rest = &rest[at + image_token.len()..];
    }
    out.push_str(rest);
    tok.encode(&out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for p in m['content'] %}{% if p['type'] == 'image' %}<I>{% else %}{{ p['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    fn tok() -> TextTokenizer {
        use crate::text::test_fixtures::{byte_level_json, model_dir};
        let dir = model_dir(&[("tokenizer.json", &byte_level_json())]);
        TextTokenizer::from_dir(&dir).unwrap()
    }

    #[test]
    fn parts_in_family_order() {
        let t = tok();
        let after = render_prompt(&t, Some(TEMPLATE), "Hi", "<I>", 1, false).unwrap();
        assert_eq!(after, "<|im_start|>user\nHi<I><|im_end|>\n<|im_start|>assistant\n");
        let first = render_prompt(&t, Some(TEMPLATE), "Hi", "<I>", 2, true).unwrap();
        assert_eq!(first, "<|im_start|>user\n<I><I>Hi<|im_end|>\n<|im_start|>assistant\n");
        // a prompt carrying the image token is verbatim
        assert_eq!(render_prompt(&t, Some(TEMPLATE), "a <I> b", "<I>", 1, false).unwrap(), "a <I> b");
    }

    #[test]
    fn expansion_counts_must_match() {
        let t = tok();
        assert!(expand_and_encode(&t, "x <I> y", "<I>", &[2, 3]).is_err());
        let ids = expand_and_encode(&t, "<I>", "<I>", &[3]).unwrap();
        let once = expand_and_encode(&t, "<I>", "<I>", &[1]).unwrap();
        assert_eq!(ids.len(), 3 * once.len());
    }
}
