//! Reading one Cap'n Proto stream frame incrementally. A frame is a segment table (a u32
//! segment count minus one, a u32 length in words per segment, zero-padded to a whole word)
//! followed by the segments. We compute only how many bytes the frame is from its table
//! ([`segment_count`], [`table_bytes`], [`body_words`]); capnp's own
//! [`BufferSegments`] re-reads the table and validates the message.
//!
//! Memory is allocated as bytes arrive, at most doubling what has arrived, never from the
//! size the header announces, so a header announcing 60 MiB and silence costs a few words.

use std::ops::Deref;

use capnp::Word;
use capnp::message::{Reader, ReaderOptions};
use capnp::serialize::{BufferSegments, SEGMENTS_COUNT_LIMIT, SegmentLengthsBuilder};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

use crate::error::Error;
use crate::rpc::limits::{ConnectionBudget, READ_STALL};

/// Bytes read at a time into a growing frame.
const CHUNK_BYTES: usize = 64 << 10;

/// The number of segments a frame's first word announces: 1 to 511, as capnp accepts.
pub fn segment_count(first_word: &[u8; 8]) -> capnp::Result<usize> {
    let raw = u32::from_le_bytes([first_word[0], first_word[1], first_word[2], first_word[3]]);
    let count = raw as usize + 1;
    if raw == u32::MAX || count >= SEGMENTS_COUNT_LIMIT {
        let head = &first_word[..4];
        let text = match head.iter().all(u8::is_ascii_graphic) {
            true => format!(
                " (its first bytes read {:?})",
                String::from_utf8_lossy(head)
            ),
            false => String::new(),
        };
        return Err(capnp::Error::failed(format!(
            "a frame announces {} segments{text}: not Cap'n Proto",
            u64::from(raw) + 1
        )));
    }
    Ok(count)
}

/// Bytes of the segment table of a frame with `segments` segments: 4 + 4 per segment, padded to
/// a multiple of 8.
pub fn table_bytes(segments: usize) -> usize {
    (segments / 2 + 1) * 8
}

/// Words of segment data a complete segment table announces (the sum of its lengths).
pub fn body_words(table: &[u8]) -> capnp::Result<usize> {
    let count = segment_count(first_word(table)?)?;
    if table.len() < table_bytes(count) {
        return Err(capnp::Error::failed("a segment table is cut short".into()));
    }
    let mut lengths = SegmentLengthsBuilder::with_capacity(count);
    for i in 0..count {
        let at = 4 + 4 * i;
        let length = u32::from_le_bytes([table[at], table[at + 1], table[at + 2], table[at + 3]]);
        lengths.try_push_segment(length as usize)?;
    }
    Ok(lengths.total_words())
}

fn first_word(table: &[u8]) -> capnp::Result<&[u8; 8]> {
    table
        .get(..8)
        .and_then(|word| word.try_into().ok())
        .ok_or_else(|| capnp::Error::failed("a segment table is cut short".into()))
}

/// A whole frame, word-aligned: its segment table, then its segments.
pub struct Frame {
    words: Vec<Word>,
}

impl Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        Word::words_to_bytes(&self.words)
    }
}

impl Frame {
    /// A frame holding a copy of `bytes` (a multiple of 8 long).
    pub fn from_bytes(bytes: &[u8]) -> Frame {
        let words = bytes
            .chunks_exact(8)
            .map(|b| capnp::word(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]))
            .collect();
        Frame { words }
    }

    /// The message, validated by capnp against `options`.
    pub fn into_message(
        self,
        options: ReaderOptions,
    ) -> capnp::Result<Reader<BufferSegments<Frame>>> {
        Ok(Reader::new(BufferSegments::new(self, options)?, options))
    }

    /// Appends `bytes` zeroed bytes (a multiple of 8) and returns them to be filled, growing
    /// the buffer at most to double what it holds and never past `total` bytes.
    fn extend(&mut self, bytes: usize, total: usize) -> &mut [u8] {
        let (len, add) = (self.words.len(), bytes / 8);
        if self.words.capacity() < len + add {
            let target = (self.words.capacity() * 2).max(len + add).min(total / 8);
            self.words.reserve_exact(target.max(len + add) - len);
        }
        self.words
            .resize(len + add, capnp::word(0, 0, 0, 0, 0, 0, 0, 0));
        Word::words_to_bytes_mut(&mut self.words[len..])
    }
}

/// Reads the next frame from `reader`; None at a clean end of stream (before a frame starts).
/// The frame is admitted by `budget` once its size is known (which may wait, see
/// [`ConnectionBudget::admit_frame`]; a connection closed meanwhile ends the wait); a frame
/// whose bytes stop for [`READ_STALL`] fails.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    budget: &ConnectionBudget,
) -> capnp::Result<Option<Frame>> {
    let mut first = [0u8; 8];
    let n = reader.read(&mut first).await?;
    if n == 0 {
        return Ok(None);
    }
    fill(reader, &mut first[n..]).await?;
    let table = table_bytes(segment_count(&first)?);
    let mut frame = Frame::from_bytes(&first);
    fill(reader, frame.extend(table - 8, table)).await?;
    let total = table + body_words(&frame)? * 8;
    let _permit = tokio::select! {
        permit = budget.admit_frame(total) => permit?,
        ended = closed(reader) => return Err(ended),
    };
    while frame.len() < total {
        let chunk = (total - frame.len()).min(CHUNK_BYTES);
        fill(reader, frame.extend(chunk, total)).await?;
    }
    Ok(Some(frame))
}

/// Resolves if the stream ends (or fails) before any more of the frame arrives, consuming
/// nothing; never once bytes are waiting.
async fn closed<R: AsyncBufRead + Unpin>(reader: &mut R) -> capnp::Error {
    match reader.fill_buf().await {
        Ok([]) => cut_short(),
        Ok(_) => std::future::pending().await,
        Err(error) => error.into(),
    }
}

fn cut_short() -> capnp::Error {
    capnp::Error::disconnected("the connection ended inside a message".into())
}

/// Fills `buf`, failing if the stream ends or no byte arrives for [`READ_STALL`].
async fn fill<R: AsyncRead + Unpin>(reader: &mut R, mut buf: &mut [u8]) -> capnp::Result<()> {
    while !buf.is_empty() {
        let read = tokio::time::timeout(READ_STALL, reader.read(buf))
            .await
            .map_err(|_| stalled())??;
        if read == 0 {
            return Err(cut_short());
        }
        buf = &mut buf[read..];
    }
    Ok(())
}

fn stalled() -> capnp::Error {
    Error::ResourceExhausted(format!(
        "a message stalled: no byte arrived for {READ_STALL:?}"
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::limits::NodeBudget;
    use proptest::prelude::*;
    use std::time::Duration;

    /// A frame with these segment lengths and arbitrary (zero) contents.
    fn framed(lengths: &[u32]) -> Vec<u8> {
        let mut out = ((lengths.len() as u32).wrapping_sub(1))
            .to_le_bytes()
            .to_vec();
        for length in lengths {
            out.extend(length.to_le_bytes());
        }
        if !out.len().is_multiple_of(8) {
            out.extend([0; 4]);
        }
        let body: usize = lengths.iter().map(|&l| l as usize * 8).sum();
        out.resize(out.len() + body, 0);
        out
    }

    fn frame_len(bytes: &[u8]) -> capnp::Result<usize> {
        let first: &[u8; 8] = bytes[..8].try_into().unwrap();
        let table = table_bytes(segment_count(first)?);
        Ok(table + body_words(&bytes[..table.min(bytes.len())])? * 8)
    }

    proptest! {
        /// Our frame length is exactly the length capnp's own writer produces.
        #[test]
        fn frame_length_matches_capnps_writer(
            texts in proptest::collection::vec(".{0,40}", 1..20),
            first_segment_words in 1u32..16,
        ) {
            let mut builder = capnp::message::Builder::new(
                capnp::message::HeapAllocator::new().first_segment_words(first_segment_words),
            );
            let mut list: capnp::text_list::Builder = builder
                .init_root::<capnp::any_pointer::Builder>()
                .initn_as(texts.len() as u32);
            for (i, text) in texts.iter().enumerate() {
                list.set(i as u32, text.as_str());
            }
            let bytes = capnp::serialize::write_message_to_words(&builder);
            prop_assert_eq!(frame_len(&bytes).unwrap(), bytes.len());
        }

        /// For any first bytes, either both we and capnp refuse the table, or we name a length
        /// at which capnp accepts the frame and one word less it refuses.
        #[test]
        fn frame_length_agrees_with_capnps_reader(
            lengths in proptest::collection::vec(0u32..64, 1..12),
            junk in any::<[u8; 8]>(),
            use_junk in any::<bool>(),
        ) {
            let mut bytes = framed(&lengths);
            if use_junk {
                bytes[..8].copy_from_slice(&junk);
                bytes.resize(bytes.len().max(4096), 0);
            }
            let options = ReaderOptions::new();
            match frame_len(&bytes) {
                Ok(len) if len <= bytes.len() => {
                    let exact = Frame::from_bytes(&bytes[..len]);
                    prop_assert!(BufferSegments::new(exact, options).is_ok());
                    let short = Frame::from_bytes(&bytes[..len - 8]);
                    prop_assert!(BufferSegments::new(short, options).is_err());
                }
                Ok(_) => {}
                Err(_) => {
                    let all = Frame::from_bytes(&bytes[..bytes.len() / 8 * 8]);
                    prop_assert!(BufferSegments::new(all, options).is_err());
                }
            }
        }
    }

    #[test]
    fn segment_counts_outside_capnps_range_are_refused() {
        let word = |raw: u32| {
            let mut word = [0u8; 8];
            word[..4].copy_from_slice(&raw.to_le_bytes());
            word
        };
        assert_eq!(segment_count(&word(0)).unwrap(), 1);
        assert_eq!(segment_count(&word(510)).unwrap(), 511);
        assert!(segment_count(&word(511)).is_err());
        assert!(segment_count(&word(u32::MAX)).is_err());
        assert_eq!(table_bytes(1), 8);
        assert_eq!(table_bytes(2), 16);
        assert_eq!(table_bytes(3), 16);
        assert_eq!(table_bytes(4), 24);
    }

    #[test]
    fn a_growing_frame_holds_at_most_double_what_arrived_and_never_its_announced_size() {
        let announced = 60 << 20;
        let mut frame = Frame::from_bytes(&[0; 8]);
        frame.extend(CHUNK_BYTES, announced);
        assert!(frame.words.capacity() * 8 <= 2 * (CHUNK_BYTES + 8));
        while frame.len() < 10 * CHUNK_BYTES {
            frame.extend(CHUNK_BYTES, announced);
            assert!(
                frame.words.capacity() * 8 <= 2 * frame.len(),
                "{}",
                frame.len()
            );
        }
        let mut whole = Frame::from_bytes(&[0; 8]);
        while whole.len() < 97 * 8 {
            whole.extend(8 * 8, 97 * 8);
        }
        assert_eq!(whole.words.capacity(), 97, "never past the frame's size");
    }

    #[tokio::test]
    async fn a_frame_cut_short_fails_as_a_disconnection() {
        let budget = ConnectionBudget::authenticated(NodeBudget::default());
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut server = tokio::io::BufReader::new(server);
        let header = [0, 0, 0, 0, 0, 0, 0x78, 0]; // one segment of 0x780000 words = 60 MiB
        tokio::io::AsyncWriteExt::write_all(&mut client, &header)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, &[7u8; 8 * 1000])
            .await
            .unwrap();
        drop(client);
        let error = read_frame(&mut server, &budget).await.err().unwrap();
        assert_eq!(error.kind, capnp::ErrorKind::Disconnected, "{error:?}");
    }

    /// A pipe whose client end has written one frame header (one segment of 0x0078_0000
    /// words, 60 MiB) and nothing more.
    async fn after_large_header() -> (
        tokio::io::DuplexStream,
        tokio::io::BufReader<tokio::io::DuplexStream>,
    ) {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let header = [0, 0, 0, 0, 0, 0, 0x78, 0];
        tokio::io::AsyncWriteExt::write_all(&mut client, &header)
            .await
            .unwrap();
        (client, tokio::io::BufReader::new(server))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_frame_fails_after_the_read_stall() {
        let budget = ConnectionBudget::authenticated(NodeBudget::default());
        let (client, mut server) = after_large_header().await;
        let error = read_frame(&mut server, &budget).await.err().unwrap();
        assert!(error.extra.starts_with("ResourceExhausted: "), "{error:?}");
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closed_while_its_frame_waits_for_login_ends_at_once() {
        let budget = ConnectionBudget::pre_auth(NodeBudget::default(), Box::new(|| {}));
        let (client, mut server) = after_large_header().await;
        drop(client);
        // Virtual time: without the close being seen, this would wait for a login forever.
        let read =
            tokio::time::timeout(Duration::from_secs(3600), read_frame(&mut server, &budget));
        let error = read.await.expect("the close ends the wait").err().unwrap();
        assert_eq!(error.kind, capnp::ErrorKind::Disconnected, "{error:?}");
    }

    #[tokio::test]
    async fn frames_arrive_whole_in_order_then_a_clean_end() {
        let budget = ConnectionBudget::authenticated(NodeBudget::default());
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut server = tokio::io::BufReader::new(server);
        let big = framed(&[1, 40_000, 3]);
        let small = framed(&[2]);
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut client, &big)
                .await
                .unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut client, &small)
                .await
                .unwrap();
        });
        let first = read_frame(&mut server, &budget).await.unwrap().unwrap();
        assert_eq!(first.len(), framed(&[1, 40_000, 3]).len());
        let second = read_frame(&mut server, &budget).await.unwrap().unwrap();
        assert_eq!(&*second, &framed(&[2])[..]);
        writer.await.unwrap();
        assert!(read_frame(&mut server, &budget).await.unwrap().is_none());
    }
}
