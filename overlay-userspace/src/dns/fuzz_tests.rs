//! Bounded fuzzing of [`respond`], run by `cargo test` on stable: random bytes and
//! mutations of real queries (bit flips, forged counts, compression pointers, oversized
//! labels). Every message must get a decodable answer with its id, or be dropped or
//! forwarded, never a panic, and quickly.
//!
//! A fixed seed per run keeps failures reproducible: set `OVERLAY_DNS_FUZZ_SEED` to
//! another number (and `OVERLAY_DNS_FUZZ_CASES` to a larger count) to explore further.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{
    query::{CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD, Outcome, Transport, respond},
    view::{DnsContainer, DnsEndpoint, DnsNetwork, NameView},
};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn view() -> NameView {
    let view = NameView::new();
    view.upsert_network(DnsNetwork { name: "blue".into(), internal: false }).unwrap();
    for i in 0..60u8 {
        let endpoints =
            vec![DnsEndpoint { network: "blue".into(), ip: Ipv4Addr::new(10, 0, 9, i), aliases: vec!["web".into()] }];
        view.upsert_container(DnsContainer { id: format!("c{i}"), name: format!("c{i}"), endpoints }).unwrap();
    }
    view
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (name, qtype) in [
        ("c1.", RecordType::A),
        ("WEB.", RecordType::A),
        ("c2.blue.", RecordType::AAAA),
        ("3.9.0.10.in-addr.arpa.", RecordType::PTR),
        ("example.org.", RecordType::A),
    ] {
        for edns in [None, Some(4096)] {
            let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
            message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
            if let Some(size) = edns {
                let mut e = Edns::new();
                e.set_max_payload(size);
                message.set_edns(e);
            }
            seeds.push(message.to_vec().unwrap());
        }
    }
    seeds
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.gen_ratio(1, 5) {
        let len = rng.gen_range(0..600);
        return (0..len).map(|_| rng.r#gen()).collect();
    }
    let mut bytes = seeds[rng.gen_range(0..seeds.len())].clone();
    for _ in 0..rng.gen_range(1..6) {
        let at = rng.gen_range(0..bytes.len().max(1));
        match rng.gen_range(0..7) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.gen_range(0..8),
            1 if !bytes.is_empty() => bytes[at] = rng.r#gen(),
            // A count field (questions, answers, authorities, additionals) forged.
            2 if bytes.len() >= 12 => {
                let field = 4 + 2 * rng.gen_range(0..4);
                let value: u16 = if rng.r#gen() { u16::MAX } else { rng.gen_range(0..4) };
                bytes[field..field + 2].copy_from_slice(&value.to_be_bytes());
            }
            // A compression pointer, often to itself or forward.
            3 if at + 1 < bytes.len() => {
                bytes[at] = 0xc0;
                bytes[at + 1] = if rng.r#gen() { at as u8 } else { rng.r#gen() };
            }
            // An oversized or reserved label length, with or without the bytes it claims.
            4 => {
                let len_byte: u8 = rng.gen_range(0x3f..=0xff);
                bytes.insert(at.min(bytes.len()), len_byte);
                let filler = rng.gen_range(0..300);
                for _ in 0..filler {
                    bytes.insert(at.min(bytes.len()), b'a');
                }
            }
            5 => bytes.truncate(at),
            _ => bytes.extend((0..rng.gen_range(1..64)).map(|_| rng.r#gen::<u8>())),
        }
    }
    bytes
}

#[test]
fn dns_fuzz_respond_never_panics_or_stalls() {
    let seed = env_number("OVERLAY_DNS_FUZZ_SEED", 0x0d15_ea5e);
    let cases = env_number("OVERLAY_DNS_FUZZ_CASES", 30_000);
    let budget = Duration::from_secs(20);
    let view = view();
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let (mut replies, mut forwards, mut drops) = (0u64, 0u64, 0u64);
    let mut slowest = Duration::ZERO;
    for case in 0..cases {
        let packet = mutate(&mut rng, &seeds);
        let transport = if rng.gen_ratio(1, 4) { Transport::Tcp } else { Transport::Udp };
        let begin = Instant::now();
        let outcome = respond(&packet, "c1", &view, transport, case as usize);
        slowest = slowest.max(begin.elapsed());
        match outcome {
            Outcome::Reply(reply) => {
                replies += 1;
                let message = Message::from_vec(&reply)
                    .unwrap_or_else(|e| panic!("seed {seed} case {case}: undecodable answer ({e}) to {packet:02x?}"));
                assert_eq!(message.metadata.id.to_be_bytes(), packet[..2], "seed {seed} case {case}: id");
                assert_eq!(message.metadata.message_type, MessageType::Response);
                if transport == Transport::Udp {
                    let limit = if message.edns.is_some() { MAX_UDP_PAYLOAD } else { CLASSIC_UDP_PAYLOAD };
                    assert!(
                        reply.len() <= usize::from(limit),
                        "seed {seed} case {case}: {} bytes over UDP",
                        reply.len()
                    );
                }
            }
            Outcome::Forward(forward) => {
                forwards += 1;
                // What would be sent upstream, and the SERVFAIL, encode.
                forward.upstream_query(1).to_vec().unwrap();
                Message::from_vec(&forward.failure()).unwrap();
            }
            Outcome::Drop => drops += 1,
        }
        assert!(started.elapsed() < budget, "seed {seed}: {case} cases took over {budget:?}");
    }
    eprintln!(
        "{cases} cases in {:?}: {replies} answered, {forwards} forwarded, {drops} dropped; slowest {slowest:?}",
        started.elapsed()
    );
    assert!(slowest < Duration::from_millis(250), "one message took {slowest:?}");
    assert!(replies > cases / 4 && forwards > 0 && drops > 0, "the mutations must reach every path");
}

#[test]
fn dns_fuzz_hostile_shapes() {
    let view = view();
    // 65535 questions announced, each a pointer to the previous one.
    let mut many = vec![0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
    for _ in 0..2000 {
        many.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    }
    // Labels of 63 bytes up to and past the 255-byte name limit.
    let mut long = vec![0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..8 {
        long.push(63);
        long.extend(std::iter::repeat_n(b'x', 63));
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    // Two pointers pointing at each other.
    let pair = [0, 3, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 14, 0xc0, 12, 0, 1, 0, 1];
    for packet in [many, long, pair.to_vec()] {
        let begin = Instant::now();
        let Outcome::Reply(reply) = respond(&packet, "c1", &view, Transport::Udp, 0) else {
            panic!("a query-shaped message gets an answer");
        };
        assert!(begin.elapsed() < Duration::from_millis(250));
        let message = Message::from_vec(&reply).unwrap();
        assert_eq!(message.metadata.response_code, hickory_proto::op::ResponseCode::FormErr);
        assert!(message.queries.is_empty());
    }
}
