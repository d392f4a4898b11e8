//! The HTTP cache over a [`RemoteStore`] (a tier shared by replicas, such
//! as the Redis one): the variants of a URI as bytes, and back.
//!
//! Each URI's variants are one remote value, written whenever the local
//! ones change and read when the local store has nothing for a URI. A
//! variant is its arrival time, the request fields its policy needs (the
//! `Host`, the `Vary` selecting fields, and whether there was an
//! `Authorization`, never its value), and the response as
//! [`HttpCodec`](crate::cache::HttpCodec) writes it. The policy is made
//! again from these on reading, so ages and freshness go on where they
//! were.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, Uri};

use super::arrival;
use super::policy;
use super::stored::{Stored, Variants};
use crate::cache::{Codec, HttpCodec};
use crate::BoxError;

const FORMAT: u8 = 1;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// `variants` as bytes.
pub(crate) fn encode(key: &str, variants: &Variants, out: &mut Vec<u8>) -> Result<(), BoxError> {
    out.push(FORMAT);
    let list = variants.list();
    out.extend_from_slice(&(list.len() as u16).to_be_bytes());
    for s in list {
        let ms = s
            .received
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        out.extend_from_slice(&ms.to_be_bytes());
        put_bytes(out, s.uri(key).to_string().as_bytes());
        out.extend_from_slice(&(s.request.len() as u16).to_be_bytes());
        for (name, value) in &s.request {
            put_bytes(out, name.as_str().as_bytes());
            put_bytes(out, value.as_bytes());
        }
        let mut res = Response::new(s.body.clone());
        *res.status_mut() = s.status;
        *res.version_mut() = s.version;
        *res.headers_mut() = s.headers.clone();
        let mut buf = Vec::new();
        HttpCodec.encode(&res, &mut buf)?;
        put_bytes(out, &buf);
    }
    Ok(())
}

/// Reads what [`encode`] wrote; refuses anything else.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BoxError> {
        if self.0.len() < n {
            return Err("http cache: a remote entry is cut short".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, BoxError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64, BoxError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], BoxError> {
        let n = u32::from_be_bytes(self.take(4)?.try_into()?) as usize;
        self.take(n)
    }
}

/// The variants `bytes` hold, with their policies made again under `opts`.
pub(crate) fn decode(
    bytes: &[u8],
    opts: http_cache_semantics::CacheOptions,
) -> Result<Variants, BoxError> {
    let mut r = Reader(bytes);
    if r.take(1)? != [FORMAT] {
        return Err("http cache: not a remote entry of this format".into());
    }
    let n = r.u16()?;
    let mut list = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let received = UNIX_EPOCH + Duration::from_millis(r.u64()?);
        let uri: Uri = std::str::from_utf8(r.bytes()?)?.parse()?;
        let mut request = HeaderMap::new();
        for _ in 0..r.u16()? {
            let name = HeaderName::from_bytes(r.bytes()?)?;
            let value = HeaderValue::from_bytes(r.bytes()?)?;
            request.append(name, value);
        }
        let res: Response<Bytes> = HttpCodec.decode(r.bytes()?)?;
        let (parts, body) = res.into_parts();
        // The request's fields were stored after judging it, so its
        // `Cache-Control` had no `no-store`.
        let auth = request.contains_key(http::header::AUTHORIZATION);
        let arrival = arrival::arrival(false, auth, parts.status, &parts.headers, received, opts)
            .ok_or("http cache: a remote entry that may not be stored")?;
        let selecting = policy::selecting(&parts.headers, &request);
        list.push(Arc::new(Stored::new(
            parts.status,
            parts.version,
            parts.headers,
            body,
            arrival,
            selecting,
            received,
            &uri,
            request,
        )));
    }
    if !r.0.is_empty() {
        return Err("http cache: bytes after a remote entry".into());
    }
    Ok(Variants::from_list(list))
}
