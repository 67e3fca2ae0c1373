//! One query in, one answer out: the resolution rules, without sockets. [`respond`] is
//! what the servers call for every message and what the fuzz tests hammer.
//!
//! The work per message is bounded before anything is decoded: a message is dropped if
//! it is shorter than a header or is itself a response; it gets FORMERR unless it has
//! exactly one question, no answer or authority records and at most two additional
//! records. Decoding (hickory-proto) is linear in the message size and refuses
//! compression pointers that do not point backwards, so loops cannot stall it.

use std::net::Ipv4Addr;

use hickory_proto::{
    op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, RData, Record, RecordType, rdata},
    serialize::binary::{BinDecodable, BinDecoder},
};

use super::view::{Lookup, NameView, Reverse};

/// Time to live of local answers, in seconds. Short, so that a cache in a container
/// (rare: glibc does not cache) cannot keep a removed container's address for long.
pub const LOCAL_TTL: u32 = 5;
/// The largest UDP payload this resolver sends or advertises (EDNS).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Without EDNS, a UDP answer is at most this long (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// How the query arrived: it decides how long the answer may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with one message.
#[derive(Debug)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a container name: ask an upstream resolver ([`Forward::reply`] and
    /// [`Forward::failure`] build the answer).
    Forward(Forward),
    /// Not worth an answer (a response, or not even a header).
    Drop,
}

/// A query to forward, and what is needed to answer the client afterwards.
#[derive(Debug)]
pub struct Forward {
    request: Message,
    transport: Transport,
    max_len: usize,
}

/// Answers `packet` for container `querier` from `view`. `rotation` picks which address
/// comes first when a name has several (the server increments it per query).
pub fn respond(packet: &[u8], querier: &str, view: &NameView, transport: Transport, rotation: usize) -> Outcome {
    let mut decoder = BinDecoder::new(packet);
    let Ok(header) = Header::read(&mut decoder) else { return Outcome::Drop };
    if header.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let id = header.metadata.id;
    if header.metadata.op_code != OpCode::Query {
        return reply_code(id, header.metadata.op_code, ResponseCode::NotImp);
    }
    let counts = header.counts;
    if counts.queries != 1 || counts.answers != 0 || counts.authorities != 0 || counts.additionals > 2 {
        return reply_code(id, OpCode::Query, ResponseCode::FormErr);
    }
    let Ok(request) = Message::from_vec(packet) else {
        return reply_code(id, OpCode::Query, ResponseCode::FormErr);
    };
    let max_len = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => match &request.edns {
            Some(edns) => usize::from(edns.max_payload().clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD)),
            None => usize::from(CLASSIC_UDP_PAYLOAD),
        },
    };
    let query = request.queries[0].clone();
    if query.query_class() != DNSClass::IN {
        return Outcome::Reply(encode(answer(&request, ResponseCode::Refused, Vec::new()), max_len));
    }
    let local = if let Some(name) = plain_name(query.name()) {
        resolve(view, querier, &query, &name, rotation)
    } else {
        // Not a name the overlay could own: whether to forward is all there is to decide.
        match view.may_forward(querier) {
            Some(may_forward) => Local::Unknown { may_forward },
            None => Local::Refused,
        }
    };
    let message = match local {
        Local::Answers(records) => {
            let mut message = answer(&request, ResponseCode::NoError, records);
            message.metadata.authoritative = true;
            message
        }
        Local::NxDomain | Local::Unknown { may_forward: false } => answer(&request, ResponseCode::NXDomain, Vec::new()),
        Local::Refused => answer(&request, ResponseCode::Refused, Vec::new()),
        Local::Unknown { may_forward: true } => return Outcome::Forward(Forward { request, transport, max_len }),
    };
    Outcome::Reply(encode(message, max_len))
}

/// A plain name (see [`plain_name`]) against the view: PTR of an IPv4 address, or a
/// container name.
fn resolve(view: &NameView, querier: &str, query: &Query, name: &str, rotation: usize) -> Local {
    if query.query_type() == RecordType::PTR
        && let Some(ip) = reverse_ipv4(name)
    {
        return match view.reverse(querier, ip) {
            Reverse::Found(names) => Local::Answers(ptr_records(query, &names)),
            Reverse::NxDomain => Local::NxDomain,
            Reverse::Unknown { may_forward } => Local::Unknown { may_forward },
            Reverse::UnknownQuerier => Local::Refused,
        };
    }
    match view.lookup(querier, name) {
        Lookup::Found(ips) => Local::Answers(address_records(query, ips, rotation)),
        Lookup::NxDomain => Local::NxDomain,
        Lookup::Unknown { may_forward } => Local::Unknown { may_forward },
        Lookup::UnknownQuerier => Local::Refused,
    }
}

enum Local {
    Answers(Vec<Record>),
    NxDomain,
    Refused,
    Unknown { may_forward: bool },
}

impl Forward {
    /// The query to send upstream: the client's question with a fresh id, recursion
    /// desired, and our own EDNS payload size.
    pub fn upstream_query(&self, id: u16) -> Message {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(self.request.queries[0].clone());
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        message.set_edns(edns);
        message
    }

    pub fn question(&self) -> &Query {
        &self.request.queries[0]
    }

    /// Whether the client asked over TCP (then the upstream is asked over TCP too).
    pub fn wants_tcp(&self) -> bool {
        self.transport == Transport::Tcp
    }

    /// The client's answer from the upstream's: its records and code under the client's
    /// id, truncated to what the client's transport takes.
    pub fn reply(&self, upstream: Message) -> Vec<u8> {
        let mut message = answer(&self.request, upstream.metadata.response_code, upstream.answers);
        message.authorities = upstream.authorities;
        message.additionals = upstream.additionals;
        message.metadata.truncation = upstream.metadata.truncation;
        message.metadata.authentic_data = false;
        encode(message, self.max_len)
    }

    /// The answer when no upstream answered in time: SERVFAIL.
    pub fn failure(&self) -> Vec<u8> {
        encode(answer(&self.request, ResponseCode::ServFail, Vec::new()), self.max_len)
    }
}

/// A response to `request` with `code` and `answers`: same id and question, RD copied,
/// recursion available, EDNS if the client used it.
fn answer(request: &Message, code: ResponseCode, answers: Vec<Record>) -> Message {
    let mut message = Message::response(request.metadata.id, OpCode::Query);
    message.metadata.recursion_desired = request.metadata.recursion_desired;
    message.metadata.recursion_available = true;
    message.metadata.checking_disabled = request.metadata.checking_disabled;
    message.metadata.response_code = code;
    message.add_queries(request.queries.iter().cloned());
    message.answers = answers;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        message.set_edns(edns);
    }
    message
}

/// A bare header with `code` (no question: it could not be read, or is not ours to echo).
fn reply_code(id: u16, op_code: OpCode, code: ResponseCode) -> Outcome {
    let message = Message::error_msg(id, op_code, code);
    match message.to_vec() {
        Ok(bytes) => Outcome::Reply(bytes),
        Err(_) => Outcome::Drop,
    }
}

/// Encodes `message`; if it is longer than `max_len`, sends the header, question and EDNS
/// only, with TC set, so the client asks again over TCP.
fn encode(message: Message, max_len: usize) -> Vec<u8> {
    match message.to_vec() {
        Ok(bytes) if bytes.len() <= max_len => bytes,
        // A question we could decode re-encodes; an upstream record that does not is
        // as good as too long: the client retries over TCP and gets SERVFAIL there.
        _ => {
            let truncated = message.truncate();
            truncated.to_vec().unwrap_or_else(|_| {
                let id = message.metadata.id;
                Message::error_msg(id, OpCode::Query, ResponseCode::ServFail).to_vec().unwrap_or_default()
            })
        }
    }
}

/// The query name, lower-case, without the trailing dot, if every label is printable
/// ASCII without dots (anything else is no container name).
fn plain_name(name: &Name) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    for label in name.iter() {
        if !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
            return None;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    Some(out)
}

/// `D.C.B.A.in-addr.arpa` → A.B.C.D.
fn reverse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let digits = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut labels = digits.split('.');
    for octet in octets.iter_mut().rev() {
        let label = labels.next()?;
        // No leading zeros or signs: one spelling per address.
        if label.len() > 1 && label.starts_with('0') {
            return None;
        }
        *octet = label.parse().ok()?;
    }
    labels.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// A records for A and ANY questions, rotated; other types get no records (NODATA):
/// the name exists but has only IPv4 addresses.
fn address_records(query: &Query, mut ips: Vec<Ipv4Addr>, rotation: usize) -> Vec<Record> {
    if !matches!(query.query_type(), RecordType::A | RecordType::ANY) {
        return Vec::new();
    }
    if !ips.is_empty() {
        let len = ips.len();
        ips.rotate_left(rotation % len);
    }
    ips.into_iter().map(|ip| Record::from_rdata(query.name().clone(), LOCAL_TTL, RData::A(rdata::A(ip)))).collect()
}

fn ptr_records(query: &Query, names: &[String]) -> Vec<Record> {
    names
        .iter()
        .filter_map(|n| Name::from_ascii(format!("{n}.")).ok())
        .map(|target| Record::from_rdata(query.name().clone(), LOCAL_TTL, RData::PTR(rdata::PTR(target))))
        .collect()
}
