//! Values as bytes, for a [`RemoteStore`](super::RemoteStore): the
//! [`Codec`] trait, [`JsonCodec`] for serde types, [`HttpCodec`] for
//! collected HTTP responses, and the frame every remote entry is stored in
//! (its wall-clock expiry, then the value's bytes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::BoxError;

/// Turns a cached response into bytes for a remote tier and back.
///
/// Usable as a trait object; [`JsonCodec`] and [`HttpCodec`] are the
/// crate's. `decode` gets untrusted bytes (anything may sit under a key):
/// it must fail with an error, never panic, on bytes it did not write.
///
/// ```
/// use tower_patterns::cache::{Codec, JsonCodec};
///
/// let mut bytes = Vec::new();
/// Codec::<Vec<u32>>::encode(&JsonCodec, &vec![1, 2, 3], &mut bytes).unwrap();
/// let back: Vec<u32> = JsonCodec.decode(&bytes).unwrap();
/// assert_eq!(back, [1, 2, 3]);
/// assert!(Codec::<Vec<u32>>::decode(&JsonCodec, b"\xff\x00").is_err());
/// ```
pub trait Codec<T>: Send + Sync {
    /// Appends `value`'s bytes to `out`.
    ///
    /// # Errors
    ///
    /// When `value` cannot be written (the response is then not stored
    /// remotely, and still served).
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), BoxError>;

    /// The value `bytes` hold.
    ///
    /// # Errors
    ///
    /// When `bytes` are not a value this codec wrote (counted by the cache
    /// as a bad entry, and treated as a miss).
    fn decode(&self, bytes: &[u8]) -> Result<T, BoxError>;
}

/// Any serde type, as JSON (`serde_json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonCodec;

impl<T: Serialize + DeserializeOwned> Codec<T> for JsonCodec {
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), BoxError> {
        Ok(serde_json::to_writer(out, value)?)
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Collected HTTP responses (`http::Response<Full<Bytes>>`, what
/// [`fetch::CollectLayer`](crate::fetch::CollectLayer) yields, or
/// `http::Response<Bytes>`): status, version, headers and body in a compact
/// binary form (lengths as varints). Extensions are not
/// kept.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower_patterns::cache::{Codec, HttpCodec};
///
/// let res = http::Response::builder()
///     .status(201)
///     .header("content-type", "application/json")
///     .body(Full::new(Bytes::from_static(b"{\"id\":7}")))
///     .unwrap();
/// let mut bytes = Vec::new();
/// HttpCodec.encode(&res, &mut bytes).unwrap();
/// let back: http::Response<Full<Bytes>> = HttpCodec.decode(&bytes).unwrap();
/// assert_eq!(back.status(), 201);
/// assert_eq!(back.headers()["content-type"], "application/json");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpCodec;

impl Codec<http::Response<Bytes>> for HttpCodec {
    fn encode(&self, value: &http::Response<Bytes>, out: &mut Vec<u8>) -> Result<(), BoxError> {
        http_head(value, out);
        http_body(value.body(), out);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<http::Response<Bytes>, BoxError> {
        let (res, body) = http_parse(bytes)?;
        Ok(res.map(|()| Bytes::copy_from_slice(body)))
    }
}

impl Codec<http::Response<Full<Bytes>>> for HttpCodec {
    fn encode(
        &self,
        value: &http::Response<Full<Bytes>>,
        out: &mut Vec<u8>,
    ) -> Result<(), BoxError> {
        http_head(value, out);
        // A `Full` body is one frame, ready at once.
        let body = value
            .body()
            .clone()
            .collect()
            .now_or_never()
            .ok_or("a Full body that is not ready")?
            .map_err(|never| -> BoxError { match never {} })?;
        http_body(&body.to_bytes(), out);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<http::Response<Full<Bytes>>, BoxError> {
        let (res, body) = http_parse(bytes)?;
        Ok(res.map(|()| Full::new(Bytes::copy_from_slice(body))))
    }
}

fn version_byte(v: http::Version) -> u8 {
    match v {
        http::Version::HTTP_09 => 0,
        http::Version::HTTP_10 => 1,
        http::Version::HTTP_2 => 3,
        http::Version::HTTP_3 => 4,
        _ => 2,
    }
}

/// Status (2 bytes), version (1), header count, then each header's name
/// and value, each length-prefixed; [`http_body`] follows.
fn http_head<B>(res: &http::Response<B>, out: &mut Vec<u8>) {
    out.extend_from_slice(&res.status().as_u16().to_be_bytes());
    out.push(version_byte(res.version()));
    put_varint(out, res.headers().len() as u64);
    for (name, value) in res.headers() {
        put_varint(out, name.as_str().len() as u64);
        out.extend_from_slice(name.as_str().as_bytes());
        put_varint(out, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
    }
}

/// The body, length-prefixed, so a value cut short (or with bytes after
/// it) is refused rather than served with a shorter body.
fn http_body(body: &[u8], out: &mut Vec<u8>) {
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn http_parse(bytes: &[u8]) -> Result<(http::Response<()>, &[u8]), BoxError> {
    let mut r = Reader(bytes);
    let status = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes"));
    let version = match r.take(1)?[0] {
        0 => http::Version::HTTP_09,
        1 => http::Version::HTTP_10,
        2 => http::Version::HTTP_11,
        3 => http::Version::HTTP_2,
        4 => http::Version::HTTP_3,
        v => return Err(format!("unknown HTTP version byte {v}").into()),
    };
    let count = r.varint()?;
    // Each header takes at least 2 bytes: a count beyond that is garbage.
    if count > r.0.len() as u64 / 2 {
        return Err("header count larger than the entry".into());
    }
    let mut res = http::Response::new(());
    *res.status_mut() = http::StatusCode::from_u16(status)?;
    *res.version_mut() = version;
    let headers = res.headers_mut();
    headers.reserve(count as usize);
    for _ in 0..count {
        let n = r.varint()?;
        let name = http::HeaderName::from_bytes(r.take(n)?)?;
        let n = r.varint()?;
        let value = http::HeaderValue::from_bytes(r.take(n)?)?;
        headers.append(name, value);
    }
    let n = r.varint()?;
    let body = r.take(n)?;
    if !r.0.is_empty() {
        return Err("bytes after the end of the entry".into());
    }
    Ok((res, body))
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: impl TryInto<usize>) -> Result<&'a [u8], BoxError> {
        let n = n.try_into().map_err(|_| "length out of range")?;
        if n > self.0.len() {
            return Err("entry cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, BoxError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("varint longer than 64 bits".into())
    }
}

// ---- The frame of a remote entry ------------------------------------------

/// The first byte of every frame: the format's version.
const FRAME_V1: u8 = 0xC1;
/// Version byte plus two 8-byte times.
pub(crate) const FRAME_HEAD: usize = 17;

/// Milliseconds since the Unix epoch, saturating.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// The frame's head: fresh and keep instants as Unix milliseconds.
pub(crate) fn frame_head(out: &mut Vec<u8>, fresh_until_ms: u64, keep_until_ms: u64) {
    out.push(FRAME_V1);
    out.extend_from_slice(&fresh_until_ms.to_be_bytes());
    out.extend_from_slice(&keep_until_ms.to_be_bytes());
}

/// A frame's parts: `(fresh_until_ms, keep_until_ms, value bytes)`.
pub(crate) fn frame_parts(bytes: &[u8]) -> Result<(u64, u64, &[u8]), BoxError> {
    if bytes.len() < FRAME_HEAD || bytes[0] != FRAME_V1 {
        return Err("not a cache entry frame (wrong version byte or too short)".into());
    }
    let fresh = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let keep = u64::from_be_bytes(bytes[9..17].try_into().expect("8 bytes"));
    if keep < fresh {
        return Err("cache entry frame kept for less time than fresh".into());
    }
    Ok((fresh, keep, &bytes[FRAME_HEAD..]))
}

/// How long from `now_ms` until `until_ms` (zero when past).
pub(crate) fn left(now_ms: u64, until_ms: u64) -> Duration {
    Duration::from_millis(until_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_round_trip_keeps_status_version_headers_and_body() {
        let res = http::Response::builder()
            .status(404)
            .version(http::Version::HTTP_2)
            .header("x-a", "1")
            .header("x-a", "2")
            .header("set-cookie", vec![0xffu8, b'a'].as_slice())
            .body(Bytes::from(vec![7u8; 300]))
            .unwrap();
        let mut out = Vec::new();
        HttpCodec.encode(&res, &mut out).unwrap();
        let back: http::Response<Bytes> = HttpCodec.decode(&out).unwrap();
        assert_eq!(back.status(), 404);
        assert_eq!(back.version(), http::Version::HTTP_2);
        let xa: Vec<_> = back.headers().get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(back.headers()["set-cookie"].as_bytes(), [0xff, b'a']);
        assert_eq!(back.body(), res.body());
    }

    #[test]
    fn every_prefix_and_garbage_fails_without_panicking() {
        let res = http::Response::builder()
            .header("x-a", "1")
            .body(Bytes::from_static(b"body"))
            .unwrap();
        let mut out = Vec::new();
        HttpCodec.encode(&res, &mut out).unwrap();
        let head = out.len() - 4;
        for n in 0..head {
            let r: Result<http::Response<Bytes>, _> = HttpCodec.decode(&out[..n]);
            assert!(r.is_err(), "prefix of {n} bytes decoded");
        }
        for junk in [
            &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..],
            b"\x00\xc8\x02\x05",
        ] {
            let r: Result<http::Response<Bytes>, _> = HttpCodec.decode(junk);
            assert!(r.is_err());
        }
        assert!(frame_parts(b"short").is_err());
        assert!(frame_parts(&[0u8; 40]).is_err());
    }

    #[test]
    fn frame_round_trip() {
        let mut out = Vec::new();
        frame_head(&mut out, 10, 20);
        out.extend_from_slice(b"v");
        assert_eq!(frame_parts(&out).unwrap(), (10, 20, &b"v"[..]));
        assert_eq!(left(15, 10), Duration::ZERO);
        assert_eq!(left(10, 15), Duration::from_millis(5));
    }
}
