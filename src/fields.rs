//! Internal: header fields that own their bytes.
//!
//! hyper parses a message's field values as slices of the connection's
//! read buffer, so anything that keeps a value keeps that whole buffer
//! (8 KiB to about 400 KiB): a stored response pins one per entry, and
//! while a value is alive hyper cannot reuse the buffer for the
//! connection's next read and allocates a fresh one. What this crate keeps
//! beyond the call that received it (a cached response, a streaming
//! body's fields) goes through [`own`] first.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};

/// Gives `headers`' values bytes of their own, all in one allocation;
/// names, order, repeats and sensitivity stay as they were.
pub(crate) fn own(headers: &mut HeaderMap) {
    own_with_body(headers, &[]);
}

/// Copies `body` and `headers`' values into one buffer of exactly their
/// size; returns the body's copy (with 10,000 responses kept by a cache,
/// hyper's buffers would hold ~100 MB: `benches/http_stack.rs`,
/// "responses kept").
pub(crate) fn own_with_body(headers: &mut HeaderMap, body: &[u8]) -> Bytes {
    let len = body.len() + headers.values().map(HeaderValue::len).sum::<usize>();
    let mut buf = BytesMut::with_capacity(len);
    buf.extend_from_slice(body);
    for v in headers.values() {
        buf.extend_from_slice(v.as_bytes());
    }
    let buf = buf.freeze();
    let mut at = body.len();
    for v in headers.values_mut() {
        let n = v.len();
        // The same bytes, so still valid; kept as they were if not.
        if let Ok(mut owned) = HeaderValue::from_maybe_shared(buf.slice(at..at + n)) {
            owned.set_sensitive(v.is_sensitive());
            *v = owned;
        }
        at += n;
    }
    buf.slice(..body.len())
}

/// Whether `headers`' values are the copy [`own_with_body`] made beside
/// `body`: each (empty ones aside) right after the one before, the first
/// right after the body. The values are then slices of the buffer the
/// body heads, with bytes of their own already, and the body is no slice
/// of a larger buffer: whoever keeps both need not copy them again
/// (`fetch::Collect` made them; the HTTP cache above it keeps them). A
/// value added or changed since, or removed from between two others,
/// breaks the run: the answer is then `false`, and the caller copies.
/// So is it with no value to go by. (A body with its head cut off still
/// passes: it keeps no more than the buffer the copy was made in.)
pub(crate) fn owned_with(body: &Bytes, headers: &HeaderMap) -> bool {
    // Addresses are compared, never read: a coincidence could only keep
    // a buffer alive longer, never change a byte.
    let mut next = body.as_ptr() as usize + body.len();
    let mut seen = false;
    for v in headers.values() {
        let bytes = v.as_bytes();
        if bytes.is_empty() {
            continue;
        }
        if bytes.as_ptr() as usize != next {
            return false;
        }
        next += bytes.len();
        seen = true;
    }
    seen && !body.is_empty()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    /// A read buffer that says when it is freed.
    struct Buffer(Vec<u8>, Arc<AtomicBool>);

    impl AsRef<[u8]> for Buffer {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Buffer {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    /// The copy holds no slice of the buffer the fields were read into,
    /// and keeps every value, its repeats and its sensitivity.
    #[test]
    fn the_copy_frees_the_buffer_the_fields_were_read_into() {
        let freed = Arc::new(AtomicBool::new(false));
        let buffer = Bytes::from_owner(Buffer(b"text/plainabcx-v1x-v2".to_vec(), freed.clone()));
        let value =
            |at: std::ops::Range<usize>| HeaderValue::from_maybe_shared(buffer.slice(at)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", value(0..10));
        let mut token = value(10..13);
        token.set_sensitive(true);
        headers.insert("authorization", token);
        headers.append("x-repeat", value(13..17));
        headers.append("x-repeat", value(17..21));
        headers.insert("x-empty", HeaderValue::from_static(""));
        drop(buffer);

        let mut kept = headers.clone();
        super::own(&mut kept);
        assert_eq!(kept, headers);
        assert!(kept["authorization"].is_sensitive());
        assert!(!kept["content-type"].is_sensitive());
        assert!(!freed.load(Ordering::SeqCst), "the original still holds it");
        drop(headers);
        assert!(freed.load(Ordering::SeqCst), "the copy holds the buffer");
        assert_eq!(
            kept.get_all("x-repeat").iter().collect::<Vec<_>>(),
            ["x-v1", "x-v2"]
        );
        let mut none = HeaderMap::new();
        super::own(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn the_body_and_the_values_share_one_exact_buffer() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("one"));
        headers.insert("x-b", HeaderValue::from_static("two"));
        // A body that is a slice of a much larger buffer, as hyper's are.
        let big = Bytes::from(vec![b'x'; 8192]);
        let body = super::own_with_body(&mut headers, &big.slice(..5));
        assert_eq!(body, "xxxxx");
        assert_eq!(
            (headers["x-a"].as_bytes(), headers["x-b"].as_bytes()),
            (&b"one"[..], &b"two"[..])
        );
        // Body and values are adjacent in one allocation of 5 + 3 + 3 bytes.
        let start = body.as_ptr() as usize;
        assert_eq!(headers["x-a"].as_bytes().as_ptr() as usize, start + 5);
        assert_eq!(headers["x-b"].as_bytes().as_ptr() as usize, start + 8);
    }

    /// `owned_with` knows `own_with_body`'s copy, and nothing else: not
    /// the fields before the copy, not a copy a value was added to,
    /// changed in or taken from between two others, not another body.
    #[test]
    fn owned_with_knows_the_copy_own_with_body_made_and_nothing_else() {
        let mut raw = HeaderMap::new();
        raw.insert("content-type", HeaderValue::from_static("text/plain"));
        raw.insert("x-empty", HeaderValue::from_static(""));
        raw.append("x-repeat", HeaderValue::from_static("a"));
        raw.append("x-repeat", HeaderValue::from_static("b"));
        raw.insert("etag", HeaderValue::from_static("\"v1\""));
        let read = Bytes::from(vec![b'x'; 8192]).slice(100..110);
        assert!(!super::owned_with(&read, &raw), "hyper's fields");

        let mut copy = raw.clone();
        let body = super::own_with_body(&mut copy, &read);
        assert!(super::owned_with(&body, &copy));
        assert!(
            super::owned_with(&body, &copy.clone()),
            "a clone shares them"
        );
        assert!(!super::owned_with(&read, &copy), "another body");
        assert!(!super::owned_with(&body.slice(..9), &copy), "a part of it");

        let mut last_removed = copy.clone();
        last_removed.remove("etag");
        assert!(super::owned_with(&body, &last_removed), "still a run");
        let mut middle_removed = copy.clone();
        middle_removed.remove("x-repeat");
        assert!(!super::owned_with(&body, &middle_removed));
        let mut changed = copy.clone();
        changed.insert("content-type", HeaderValue::from_static("text/html"));
        assert!(!super::owned_with(&body, &changed));
        let mut added = copy.clone();
        added.append("x-repeat", HeaderValue::from_static("c"));
        assert!(!super::owned_with(&body, &added));

        // Nothing to go by: no values, or no body.
        let mut none = HeaderMap::new();
        let only_body = super::own_with_body(&mut none, b"abc");
        assert!(!super::owned_with(&only_body, &none));
        let mut no_body = raw.clone();
        let empty = super::own_with_body(&mut no_body, b"");
        assert!(!super::owned_with(&empty, &no_body));
    }
}
