//! The spool's record format, as pure functions over byte slices.
//!
//! ```text
//! magic "XRS1" (4 bytes) | payload length u32 LE | CRC32 of payload u32 LE | payload
//! ```
//!
//! The payload is one [`MappedBatch`] in CBOR. A record is valid only when
//! all of it is present and the checksum matches; anything else (a write
//! torn by a crash, a flipped bit) is reported as [`RecordError`] and never
//! decoded.

use xray_model::MappedBatch;

/// First bytes of every record.
pub(crate) const MAGIC: [u8; 4] = *b"XRS1";
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 12;
/// Largest payload a record may hold (a sanity bound for reading).
pub(crate) const MAX_PAYLOAD: u32 = 1 << 30;

/// Why bytes at some offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    /// The file ends inside the record (a torn write).
    #[error("record incomplete: {have} of {need} bytes present")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes the record needs.
        need: usize,
    },
    /// The record does not start with the magic bytes.
    #[error("no record magic")]
    BadMagic,
    /// The length field is absurd.
    #[error("record length {0} exceeds the maximum")]
    BadLength(u32),
    /// The payload does not match its checksum.
    #[error("record checksum mismatch")]
    BadChecksum,
}

/// The header of a record holding `payload`.
pub(crate) fn header(payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

/// Checks a header; returns the payload length and its checksum.
pub(crate) fn parse_header(h: &[u8]) -> Result<(u32, u32), RecordError> {
    if h.len() < HEADER_LEN {
        return Err(RecordError::Truncated {
            have: h.len(),
            need: HEADER_LEN,
        });
    }
    if h[..4] != MAGIC {
        return Err(RecordError::BadMagic);
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > MAX_PAYLOAD {
        return Err(RecordError::BadLength(len));
    }
    let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    Ok((len, crc))
}

/// The record at the start of `bytes`: its payload and total length.
pub(crate) fn parse(bytes: &[u8]) -> Result<(&[u8], usize), RecordError> {
    let (len, crc) = parse_header(bytes)?;
    let need = HEADER_LEN + len as usize;
    if bytes.len() < need {
        return Err(RecordError::Truncated {
            have: bytes.len(),
            need,
        });
    }
    let payload = &bytes[HEADER_LEN..need];
    if crc32fast::hash(payload) != crc {
        return Err(RecordError::BadChecksum);
    }
    Ok((payload, need))
}

/// Encodes a batch as a record payload.
pub(crate) fn encode_batch(batch: &MappedBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + batch.len() * 256);
    // Writing into a Vec cannot fail, and every field of MappedBatch is
    // serializable.
    if let Err(e) = ciborium::into_writer(batch, &mut out) {
        tracing::error!(error = %e, "cannot encode a batch for the spool");
        out.clear();
    }
    out
}

/// Decodes a record payload.
pub(crate) fn decode_batch(payload: &[u8]) -> Result<MappedBatch, String> {
    ciborium::from_reader(payload).map_err(|e| e.to_string())
}

/// Splits a whole segment's bytes into valid records: the payload ranges of
/// the valid prefix, and the error at the first invalid byte (if any).
pub(crate) fn scan(bytes: &[u8]) -> (Vec<std::ops::Range<usize>>, Option<(usize, RecordError)>) {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match parse(&bytes[at..]) {
            Ok((payload, total)) => {
                records.push(at + HEADER_LEN..at + HEADER_LEN + payload.len());
                at += total;
            }
            Err(e) => return (records, Some((at, e))),
        }
    }
    (records, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = header(payload).to_vec();
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_detected() {
        let mut file = record(b"first");
        file.extend(record(b"second"));
        let whole = file.len();
        let (recs, err) = scan(&file);
        assert_eq!(recs.len(), 2);
        assert_eq!(&file[recs[1].clone()], b"second");
        assert!(err.is_none());
        for cut in 1..record(b"second").len() {
            let (recs, err) = scan(&file[..whole - cut]);
            assert_eq!(recs.len(), 1, "cut {cut}");
            let (at, e) = err.expect("torn tail reported");
            assert_eq!(at, record(b"first").len());
            assert!(matches!(e, RecordError::Truncated { .. }), "{e:?}");
        }
    }

    #[test]
    fn flipped_bits_and_garbage_are_not_records() {
        let mut r = record(b"payload");
        let last = r.len() - 1;
        r[last] ^= 1;
        assert_eq!(parse(&r).unwrap_err(), RecordError::BadChecksum);
        assert_eq!(
            parse(b"garbage-garbage").unwrap_err(),
            RecordError::BadMagic
        );
        let mut huge = MAGIC.to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        huge.extend([0; 4]);
        assert_eq!(parse(&huge).unwrap_err(), RecordError::BadLength(u32::MAX));
    }

    #[test]
    fn batches_survive_encoding() {
        use xray_store::testing::{execution, step};
        let mut exec = execution("app", "e1", "pipe", 1_700_000_000_000_000_000, 5);
        exec.metadata.insert("k".into(), "v".into());
        let mut s = step(&exec, "s1", xray_model::StepType::Filter, 1, 2);
        s.candidates.push(xray_model::CandidateDecision {
            id: "c1".into(),
            decision: xray_model::Decision::Rejected,
            reason: None,
            score: Some(0.5),
        });
        let batch = MappedBatch {
            executions: vec![exec],
            steps: vec![s],
        };
        assert_eq!(decode_batch(&encode_batch(&batch)).unwrap(), batch);
    }
}
