//! Cache keys: the default [`Md5Json`] key and user key functions.

use std::fmt;
use std::hash::Hash;

use md5::{Digest, Md5};
use serde::Serialize;

/// Turns a request into the key its response is cached under.
///
/// Implemented by [`Md5Json`] (the default) and by [`FnKey`], which
/// [`CacheLayerBuilder::key_fn`](super::CacheLayerBuilder::key_fn) wraps
/// around a closure. Implement it yourself for keys that need more than a
/// closure.
pub trait KeyFn<Req> {
    /// The key type.
    type Key: Clone + Eq + Hash + Send + Sync + 'static;

    /// The key for `req`, or `None` when the request cannot be cached: the
    /// cache then passes it straight to the inner service.
    fn key(&self, req: &Req) -> Option<Self::Key>;
}

/// The default key: the lowercase hex MD5 digest of the request's JSON
/// form (the Python caching pattern's `md5(json.dumps(args, sort_keys=True))`).
///
/// The request is serialized with `serde_json` into a
/// [`serde_json::Value`] whose objects are then sorted by key at every
/// level, and that canonical JSON is hashed. So two equal requests give
/// the same key even when they hold `HashMap`s whose iteration orders
/// differ (or when `serde_json`'s `preserve_order` feature is on), and
/// struct fields are hashed in name order, not declaration order.
///
/// **Cost.** Building the `Value` allocates per field and MD5 runs over
/// every byte: roughly a microsecond for a small request, far more than a
/// cache hit otherwise costs. When the request has a natural key (an id,
/// a URL), prefer
/// [`CacheLayerBuilder::key_fn`](super::CacheLayerBuilder::key_fn).
///
/// A request that cannot be serialized (a map with non-string keys, say,
/// or a `Serialize` impl that fails) gets no key and is not cached.
///
/// ```
/// use std::collections::HashMap;
/// use tower_patterns::cache::Md5Json;
///
/// let mut a = HashMap::new();
/// a.insert("x", 1);
/// a.insert("y", 2);
/// let mut b = HashMap::new();
/// b.insert("y", 2);
/// b.insert("x", 1);
/// assert_eq!(Md5Json::digest(&a).unwrap(), Md5Json::digest(&b).unwrap());
/// assert_eq!(Md5Json::digest(&a).unwrap().len(), 32);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Md5Json;

impl Md5Json {
    /// The hex MD5 digest of `value`'s canonical JSON form (see above).
    ///
    /// Fails only when `value` cannot be serialized to JSON.
    pub fn digest<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
        let mut json = serde_json::to_value(value)?;
        json.sort_all_objects();
        let bytes = serde_json::to_vec(&json)?;
        Ok(hex(&Md5::digest(&bytes)))
    }
}

impl<Req: Serialize> KeyFn<Req> for Md5Json {
    type Key = String;

    fn key(&self, req: &Req) -> Option<String> {
        Md5Json::digest(req).ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// A key function made from a closure `Fn(&Req) -> K`; see
/// [`CacheLayerBuilder::key_fn`](super::CacheLayerBuilder::key_fn).
#[derive(Clone, Copy)]
pub struct FnKey<F>(pub F);

impl<F> fmt::Debug for FnKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnKey(..)")
    }
}

impl<Req, K, F> KeyFn<Req> for FnKey<F>
where
    F: Fn(&Req) -> K,
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    type Key = K;

    #[inline]
    fn key(&self, req: &Req) -> Option<K> {
        Some((self.0)(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        // printf '"abc"' | md5sum
        assert_eq!(
            Md5Json::digest("abc").unwrap(),
            "ebd9f4c7b06cb0aaf5d13d80e49d8b90"
        );
        // Fields are hashed in name order: printf '{"a":1,"b":[true,null]}' | md5sum
        #[derive(Serialize)]
        struct Req {
            b: (bool, Option<u8>),
            a: u8,
        }
        assert_eq!(
            Md5Json::digest(&Req {
                b: (true, None),
                a: 1
            })
            .unwrap(),
            "9264c02a0f4163be44ebc9264e797413"
        );
        assert_eq!(hex(&[0x00, 0xff, 0x1a]), "00ff1a");
    }

    #[test]
    fn unserializable_requests_get_no_key() {
        let mut m = std::collections::HashMap::new();
        m.insert((1, 2), 3);
        assert_eq!(KeyFn::key(&Md5Json, &m), None);
    }
}
