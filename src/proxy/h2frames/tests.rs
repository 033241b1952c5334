use proptest::prelude::*;

use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn sample() -> (Vec<u8>, Vec<Frame>) {
    let mut bytes = Vec::new();
    bytes.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
    bytes.extend(frame(HEADERS, 0x5, 1, &[0x48, 0x82, 0x68, 0x3f])); // bare 431
    bytes.extend(frame(RST_STREAM, 0, 1, &1u32.to_be_bytes()));
    bytes.extend(frame(HEADERS, 0x4, 3, &[0; 40])); // a response head
    bytes.extend(frame(DATA, 0x1, 3, &[7; 300]));
    bytes.extend(frame(RST_STREAM, 0, 5, &7u32.to_be_bytes()));
    bytes.extend(frame(0x6, 0, 0, &[0; 8])); // PING
    bytes.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 1]));
    let frames = vec![
        Frame::Headers {
            stream: 1,
            last: true,
            len: 4,
        },
        Frame::Reset { stream: 1, code: 1 },
        Frame::Headers {
            stream: 3,
            last: false,
            len: 40,
        },
        Frame::Data { len: 300 },
        Frame::Reset { stream: 5, code: 7 },
        Frame::GoAway { code: 1 },
    ];
    (bytes, frames)
}

#[test]
fn frames_of_interest_are_found_in_one_write() {
    let (bytes, want) = sample();
    let mut got = Vec::new();
    FrameScan::server().feed(&bytes, &mut |e| got.push(e));
    assert_eq!(got, want);
}

#[test]
fn large_frame_lengths_are_skipped_whole() {
    // A 16 MiB - 1 DATA frame, then a PING: one frame of interest.
    let mut scan = FrameScan::server();
    let mut got = Vec::new();
    let mut head = frame(DATA, 0, 1, &[]);
    head[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
    scan.feed(&head, &mut |e| got.push(e));
    scan.feed(&vec![0; 0xff_ffff], &mut |e| got.push(e));
    scan.feed(&frame(0x6, 0, 0, &[0; 8]), &mut |e| got.push(e));
    assert_eq!(got, [Frame::Data { len: 0xff_ffff }]);
}

proptest! {
    /// However the bytes are cut, the scan finds the frames a whole
    /// reading would, and nothing in payload bytes that look like frame
    /// headers; after the client's preface too.
    #[test]
    fn any_split_finds_the_same_frames(
        cuts in proptest::collection::vec(0usize..400, 0..40),
        client in any::<bool>(),
    ) {
        let (frames, want) = sample();
        let bytes = if client { [&PREFACE[..], &frames].concat() } else { frames };
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut scan = if client { FrameScan::client() } else { FrameScan::server() };
        let mut got = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            scan.feed(&bytes[at..c], &mut |e| got.push(e));
            at = c;
        }
        prop_assert_eq!(got, want);
    }

    /// Frames of any kind and length, payloads made of bytes that look
    /// like frame headers: each HEADERS and DATA is found once.
    #[test]
    fn content_frames_are_counted_however_the_stream_is_cut(
        frames in prop::collection::vec((0u8..12, 0usize..300), 0..40),
        cuts in prop::collection::vec(1usize..64, 1..20),
    ) {
        let mut bytes = Vec::new();
        let mut want = (0, 0);
        for &(kind, len) in &frames {
            bytes.extend(frame(kind, 0, 1, &vec![HEADERS; len]));
            match kind {
                HEADERS => want.0 += 1,
                DATA => want.1 += 1,
                _ => {}
            }
        }
        let mut scan = FrameScan::server();
        let mut got = (0, 0);
        let mut rest = &bytes[..];
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = cut.min(rest.len());
            scan.feed(&rest[..n], &mut |e| match e {
                Frame::Headers { .. } => got.0 += 1,
                Frame::Data { .. } => got.1 += 1,
                _ => {}
            });
            rest = &rest[n..];
        }
        prop_assert_eq!(got, want);
    }
}
