//! Streaming SHA-256: a body is hashed chunk by chunk, never held whole in memory.

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

/// Why a body could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The body passed the limit; reading stopped there.
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    /// The body stream failed (client gone, connection reset).
    #[error("reading the body: {0}")]
    Body(String),
}

/// A hashed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    /// Lowercase hex.
    pub sha256: String,
    /// Bytes hashed.
    pub size: u64,
}

/// Hashes `body` as it arrives; stops with [`HashError::TooLarge`] as soon as it passes
/// `max` bytes (the rest is never read).
pub async fn digest<B, E>(
    body: impl Stream<Item = Result<B, E>>,
    max: u64,
) -> Result<Digested, HashError>
where
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| HashError::Body(e.to_string()))?;
        let chunk = chunk.as_ref();
        size += chunk.len() as u64;
        if size > max {
            return Err(HashError::TooLarge(max));
        }
        hasher.update(chunk);
    }
    Ok(Digested {
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

/// A SHA-256 as given by a client: 64 hex digits, normalised to lowercase.
pub fn parse_sha256(text: &str) -> Option<String> {
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<&'static [u8], String>> {
        futures::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn chunked_digest_equals_the_whole_and_the_limit_is_exact() {
        let whole = digest(chunks(&[b"hello world"]), 100).await.unwrap();
        let split = digest(chunks(&[b"hel", b"", b"lo wor", b"ld"]), 100)
            .await
            .unwrap();
        assert_eq!(whole, split);
        assert_eq!(
            whole.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(whole.size, 11);
        assert!(digest(chunks(&[b"hello world"]), 11).await.is_ok());
        assert!(matches!(
            digest(chunks(&[b"hello", b" world"]), 10).await,
            Err(HashError::TooLarge(10))
        ));
        let empty = digest(chunks(&[]), 0).await.unwrap();
        assert_eq!(
            empty.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sha256_text_is_checked_and_lowercased() {
        let upper = "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9";
        assert_eq!(parse_sha256(upper).unwrap(), upper.to_ascii_lowercase());
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert_eq!(parse_sha256(bad), None, "{bad}");
        }
    }
}
