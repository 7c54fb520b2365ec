//! What a cache key holds in Redis: a value (`v` + JSON), a cached `not_found` (`n`), or a fill
//! lease (`l` + the filler's token).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

const VALUE: u8 = b'v';
const NOT_FOUND: u8 = b'n';
const LEASE: u8 = b'l';

/// A decoded entry.
pub(crate) enum Entry<T> {
    Value(T),
    NotFound,
    /// Another filler's lease: no value yet.
    Lease,
}

pub(crate) fn encode<T: Serialize>(key: &str, value: Option<&T>) -> Result<Vec<u8>, Error> {
    match value {
        None => Ok(vec![NOT_FOUND]),
        Some(v) => {
            let mut out = vec![VALUE];
            serde_json::to_writer(&mut out, v)
                .map_err(|e| Error::Codec { key: key.to_owned(), message: e.to_string() })?;
            Ok(out)
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, raw: &[u8]) -> Result<Entry<T>, Error> {
    let bad = |message: String| Error::Codec { key: key.to_owned(), message };
    match raw.split_first() {
        Some((&VALUE, json)) => {
            serde_json::from_slice(json).map(Entry::Value).map_err(|e| bad(e.to_string()))
        }
        Some((&NOT_FOUND, [])) => Ok(Entry::NotFound),
        Some((&LEASE, _)) => Ok(Entry::Lease),
        _ => Err(bad("not an entry written by keel-cache".into())),
    }
}

/// A fresh lease token (random; the `l` marks it as a lease).
pub(crate) fn lease_token() -> Vec<u8> {
    format!("l{:032x}", rand::random::<u128>()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        let raw = encode("k", Some(&("ada", 7))).unwrap();
        assert!(matches!(decode::<(String, i32)>("k", &raw), Ok(Entry::Value((s, 7))) if s == "ada"));
        assert!(matches!(decode::<i32>("k", &encode::<i32>("k", None).unwrap()), Ok(Entry::NotFound)));
        assert!(matches!(decode::<i32>("k", &lease_token()), Ok(Entry::Lease)));
        assert!(matches!(decode::<i32>("k", b"x"), Err(Error::Codec { .. })));
        assert!(matches!(decode::<i32>("k", b"v\"str\""), Err(Error::Codec { .. })));
    }
}
