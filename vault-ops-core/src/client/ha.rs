//! HA state shared by a client and its clones: the node in use and, for read-your-writes,
//! the newest `X-Vault-Index` seen (parsed and compared in OpenBao's and Vault's forms).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use reqwest::header::HeaderValue;

/// State shared by a client, its clones and the clients made from it with `with_token` /
/// `with_namespace`: the address in use and the newest `X-Vault-Index` seen.
pub(crate) struct HaState {
    current: AtomicUsize,
    index: Mutex<Option<HeaderValue>>,
}

impl HaState {
    pub(crate) fn new() -> Self {
        HaState {
            current: AtomicUsize::new(0),
            index: Mutex::new(None),
        }
    }

    /// The index of the address in use, of `count` addresses.
    pub(crate) fn current(&self, count: usize) -> usize {
        self.current.load(Ordering::Relaxed) % count.max(1)
    }

    /// Address `failed` (of `count`) could not be reached: unless another request already
    /// moved on, the next address becomes the one in use. Returns the address to try next
    /// and whether this call made the switch.
    pub(crate) fn move_past(&self, failed: usize, count: usize) -> (usize, bool) {
        if count < 2 {
            return (failed, false);
        }
        let next = (failed + 1) % count;
        let switched = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        (next, switched)
    }

    /// Address `index` answered: it becomes (stays) the one in use. Returns whether it was
    /// not the one in use before.
    pub(crate) fn stick_to(&self, index: usize) -> bool {
        // Read first: a store on every request would bounce this cache line between the
        // runtime's worker threads although the address almost never changes.
        if self.current.load(Ordering::Relaxed) == index {
            return false;
        }
        self.current.swap(index, Ordering::Relaxed) != index
    }

    /// Remembers `value` when it is newer than the remembered index.
    pub(crate) fn record_index(&self, value: &HeaderValue) {
        let mut slot = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = match slot.as_ref() {
            None => true,
            Some(old) => is_newer_index(old, value),
        };
        if newer {
            *slot = Some(value.clone());
        }
    }

    /// The remembered `X-Vault-Index`, when one was seen.
    pub(crate) fn index(&self) -> Option<HeaderValue> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A parsed `X-Vault-Index`: the cluster and the position (`(local, replicated)`; OpenBao
/// has one raft index, kept as `local`).
#[derive(Debug, PartialEq, Eq)]
struct IndexState {
    cluster: String,
    local: u64,
    replicated: u64,
}

/// Parses OpenBao's form (base64 of `{"cluster":"<id>","value":"<index>"}`) and Vault's
/// (base64 of `v1:<cluster>:<local index>:<replicated index>:<hmac>`).
fn parse_index(value: &HeaderValue) -> Option<IndexState> {
    let decoded = decode_base64(value.to_str().ok()?.trim())?;
    if decoded.first() == Some(&b'{') {
        #[derive(serde::Deserialize)]
        struct Bao {
            cluster: String,
            value: serde_json::Value,
        }
        let bao: Bao = serde_json::from_slice(&decoded).ok()?;
        let local = match bao.value {
            serde_json::Value::String(s) => s.parse().ok()?,
            serde_json::Value::Number(n) => n.as_u64()?,
            _ => return None,
        };
        return Some(IndexState {
            cluster: bao.cluster,
            local,
            replicated: 0,
        });
    }
    let text = String::from_utf8(decoded).ok()?;
    let (state, _hmac) = text.rsplit_once(':')?;
    let mut parts = state.split(':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("v1"), Some(cluster), Some(local), Some(replicated), None) if !cluster.is_empty() => {
            Some(IndexState {
                cluster: cluster.to_string(),
                local: local.parse().ok()?,
                replicated: replicated.parse().ok()?,
            })
        }
        _ => None,
    }
}

/// Whether `new` should replace the remembered index `old`: it is further along in the same
/// cluster, or either cannot be compared (another cluster, an unknown form).
fn is_newer_index(old: &HeaderValue, new: &HeaderValue) -> bool {
    match (parse_index(old), parse_index(new)) {
        (Some(o), Some(n)) if o.cluster == n.cluster => {
            n.local >= o.local && n.replicated >= o.replicated && n != o
        }
        _ => old != new,
    }
}

/// Standard or URL-safe base64, padding optional. `None` on anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let body = text.trim_end_matches('=');
    if body.len() % 4 == 1 || text.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut acc: u32 = 0;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn b64(raw: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    #[test]
    fn index_values() {
        // As OpenBao 2.7.2 sends it.
        let real =
            "eyJjbHVzdGVyIjoiNDlmZDdhMjItNjhiMC1jYzlkLTcwMjAtOTAxMzU4NDE5YjllIiwidmFsdWUiOiIzMCJ9";
        assert_eq!(
            parse_index(&hv(real)),
            Some(IndexState {
                cluster: "49fd7a22-68b0-cc9d-7020-901358419b9e".into(),
                local: 30,
                replicated: 0
            })
        );
        let bao = |c: &str, v: u64| hv(&b64(&format!(r#"{{"cluster":"{c}","value":"{v}"}}"#)));
        assert!(is_newer_index(&bao("a", 30), &bao("a", 35)));
        assert!(!is_newer_index(&bao("a", 35), &bao("a", 30)));
        assert!(!is_newer_index(&bao("a", 35), &bao("a", 35)));
        assert!(
            is_newer_index(&bao("a", 35), &bao("b", 3)),
            "another cluster"
        );
        let vault = |l: u64, r: u64| hv(&b64(&format!("v1:c1:{l}:{r}:abcdef")));
        assert_eq!(
            parse_index(&vault(7, 9)),
            Some(IndexState {
                cluster: "c1".into(),
                local: 7,
                replicated: 9
            })
        );
        assert!(is_newer_index(&vault(7, 9), &vault(8, 9)));
        assert!(!is_newer_index(&vault(8, 9), &vault(7, 9)));
        assert!(!is_newer_index(&vault(8, 9), &vault(9, 8)), "incomparable");
        // Unknown forms replace the remembered value (unless identical).
        assert_eq!(parse_index(&hv("not base64!")), None);
        assert_eq!(parse_index(&hv(&b64("v2:c:1:2:h"))), None);
        assert!(is_newer_index(&hv("opaque-1"), &hv("opaque-2")));
        assert!(!is_newer_index(&hv("opaque-1"), &hv("opaque-1")));
        // base64 details: padding optional, URL-safe alphabet, bad lengths refused.
        assert_eq!(decode_base64("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode_base64("YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(decode_base64("YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(decode_base64("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_base64("YWJjZ"), None);
        assert_eq!(decode_base64("YQ==="), None);
    }
}
