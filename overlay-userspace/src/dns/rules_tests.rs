//! The resolution rules, through the wire format: a query's bytes in, the answer's out.

use std::net::Ipv4Addr;

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, RData, RecordType},
};

use super::{
    query::{Outcome, Transport, respond},
    view::{DnsContainer, DnsEndpoint, DnsNetwork, NameView},
};

fn endpoint(network: &str, ip: [u8; 4], aliases: &[&str]) -> DnsEndpoint {
    DnsEndpoint {
        network: network.into(),
        ip: Ipv4Addr::from(ip),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
    }
}

fn container(id: &str, endpoints: Vec<DnsEndpoint>) -> DnsContainer {
    DnsContainer { id: id.into(), name: id.into(), endpoints }
}

/// blue and red are ordinary networks, secret is internal.
fn view() -> NameView {
    let view = NameView::new();
    view.upsert_network(DnsNetwork { name: "blue".into(), internal: false }).unwrap();
    view.upsert_network(DnsNetwork { name: "red".into(), internal: false }).unwrap();
    view.upsert_network(DnsNetwork { name: "secret".into(), internal: true }).unwrap();
    for c in [
        container("c1", vec![endpoint("blue", [10, 0, 9, 2], &[])]),
        container("c2", vec![endpoint("blue", [10, 0, 9, 3], &["web"])]),
        container("c4", vec![endpoint("blue", [10, 0, 9, 4], &["web"])]),
        container("c3", vec![endpoint("red", [10, 0, 10, 2], &["web"])]),
        container("both", vec![endpoint("blue", [10, 0, 9, 5], &[]), endpoint("red", [10, 0, 10, 5], &[])]),
        container("vault", vec![endpoint("secret", [10, 0, 11, 2], &[])]),
    ] {
        view.upsert_container(c).unwrap();
    }
    view
}

fn query_bytes(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        message.set_edns(e);
    }
    message.to_vec().unwrap()
}

/// The local answer (panics if the query would be forwarded or dropped).
fn ask_with(
    view: &NameView,
    querier: &str,
    name: &str,
    qtype: RecordType,
    transport: Transport,
    edns: Option<u16>,
    rotation: usize,
) -> (Message, usize) {
    match respond(&query_bytes(name, qtype, edns), querier, view, transport, rotation) {
        Outcome::Reply(bytes) => {
            let message = Message::from_vec(&bytes).expect("the answer decodes");
            assert_eq!(message.metadata.id, 0x4242);
            assert_eq!(message.metadata.message_type, MessageType::Response);
            (message, bytes.len())
        }
        other => panic!("{querier} asking {name} {qtype}: expected a local answer, got {other:?}"),
    }
}

fn ask(view: &NameView, querier: &str, name: &str, qtype: RecordType) -> Message {
    ask_with(view, querier, name, qtype, Transport::Udp, None, 0).0
}

fn addresses(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0,
            other => panic!("not an A record: {other:?}"),
        })
        .collect()
}

fn a(view: &NameView, querier: &str, name: &str) -> (ResponseCode, Vec<Ipv4Addr>) {
    let m = ask(view, querier, name, RecordType::A);
    (m.metadata.response_code, addresses(&m))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn is_forwarded(view: &NameView, querier: &str, name: &str, qtype: RecordType) -> bool {
    matches!(respond(&query_bytes(name, qtype, None), querier, view, Transport::Udp, 0), Outcome::Forward(_))
}

#[test]
fn dns_resolves_containers_on_own_networks() {
    let view = view();
    let m = ask(&view, "c1", "c2.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative && m.metadata.recursion_available && m.metadata.recursion_desired);
    assert_eq!(addresses(&m), [ip("10.0.9.3")]);
    assert_eq!(m.answers[0].ttl, super::query::LOCAL_TTL);
    assert_eq!(a(&view, "c1", "c1."), (ResponseCode::NoError, vec![ip("10.0.9.2")]), "itself");
    assert_eq!(a(&view, "c1", "both."), (ResponseCode::NoError, vec![ip("10.0.9.5")]), "only its blue address");
    assert_eq!(a(&view, "both", "both."), (ResponseCode::NoError, vec![ip("10.0.9.5"), ip("10.0.10.5")]));
}

#[test]
fn dns_is_case_insensitive_and_keeps_the_question_case() {
    let view = view();
    let m = ask(&view, "c1", "C2.", RecordType::A);
    assert_eq!(addresses(&m), [ip("10.0.9.3")]);
    assert_eq!(m.answers[0].name.to_ascii(), "C2.");
    assert_eq!(a(&view, "c1", "c2.BLUE."), (ResponseCode::NoError, vec![ip("10.0.9.3")]));
    let upper = NameView::new();
    upper
        .upsert_container(DnsContainer {
            id: "x".into(),
            name: "BusyBox01".into(),
            endpoints: vec![endpoint("My_Network", [10, 0, 9, 9], &[])],
        })
        .unwrap();
    assert_eq!(a(&upper, "x", "busybox01.my_network."), (ResponseCode::NoError, vec![ip("10.0.9.9")]));
}

#[test]
fn dns_resolves_name_dot_network_only_on_own_networks() {
    let view = view();
    assert_eq!(a(&view, "c1", "c2.blue."), (ResponseCode::NoError, vec![ip("10.0.9.3")]));
    assert_eq!(a(&view, "both", "both.red."), (ResponseCode::NoError, vec![ip("10.0.10.5")]));
    assert_eq!(a(&view, "c1", "c3.red."), (ResponseCode::NXDomain, vec![]));
    assert_eq!(a(&view, "c1", "both.red."), (ResponseCode::NXDomain, vec![]), "c1 is not on red");
    assert_eq!(
        a(&view, "c1", "nobody.blue."),
        (ResponseCode::NXDomain, vec![]),
        "the network's zone is never forwarded"
    );
    assert_eq!(a(&view, "c1", "c2.secret."), (ResponseCode::NXDomain, vec![]));
}

#[test]
fn dns_isolates_networks() {
    let view = view();
    assert_eq!(a(&view, "c1", "c3."), (ResponseCode::NXDomain, vec![]));
    assert_eq!(a(&view, "c3", "c2."), (ResponseCode::NXDomain, vec![]));
    assert_eq!(a(&view, "c3", "vault."), (ResponseCode::NXDomain, vec![]));
    assert_eq!(a(&view, "c3", "web."), (ResponseCode::NoError, vec![ip("10.0.10.2")]), "red's web only");
    // An alias shared with another network still answers with the querier's side only.
    let (_, blue_web) = a(&view, "c1", "web.");
    assert_eq!(blue_web.len(), 2);
    assert!(!blue_web.contains(&ip("10.0.10.2")));
}

#[test]
fn dns_rotates_the_addresses_of_a_shared_alias() {
    let view = view();
    let first = addresses(&ask_with(&view, "c1", "web.", RecordType::A, Transport::Udp, None, 0).0);
    let second = addresses(&ask_with(&view, "c1", "web.", RecordType::A, Transport::Udp, None, 1).0);
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, [ip("10.0.9.3"), ip("10.0.9.4")]);
    assert_ne!(first[0], second[0], "consecutive answers start with different addresses");
    assert_eq!(first.iter().rev().copied().collect::<Vec<_>>(), second);
}

#[test]
fn dns_answers_ptr_for_visible_containers() {
    let view = view();
    let m = ask(&view, "c1", "3.9.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let names: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::PTR(ptr) => ptr.0.to_ascii(),
            other => panic!("not PTR: {other:?}"),
        })
        .collect();
    assert_eq!(names, ["c2.blue."]);
    let m = ask(&view, "c1", "2.10.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "c3 is on red");
    assert!(is_forwarded(&view, "c1", "10.2.0.192.in-addr.arpa.", RecordType::PTR), "not a container's address");
}

#[test]
fn dns_answers_nodata_for_other_types_of_container_names() {
    let view = view();
    let m = ask(&view, "c1", "c2.", RecordType::AAAA);
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
    let m = ask(&view, "c1", "c2.", RecordType::ANY);
    assert_eq!(addresses(&m), [ip("10.0.9.3")]);
}

#[test]
fn dns_forwards_other_names_unless_internal() {
    let view = view();
    assert!(is_forwarded(&view, "c1", "example.org.", RecordType::A));
    assert!(is_forwarded(&view, "c1", "example.org.", RecordType::MX));
    assert_eq!(a(&view, "vault", "example.org."), (ResponseCode::NXDomain, vec![]), "internal: no forwarding");
    assert_eq!(a(&view, "vault", "vault."), (ResponseCode::NoError, vec![ip("10.0.11.2")]));
    // One network that leads out is enough.
    view.upsert_container(container(
        "vault",
        vec![endpoint("secret", [10, 0, 11, 2], &[]), endpoint("blue", [10, 0, 9, 9], &[])],
    ))
    .unwrap();
    assert!(is_forwarded(&view, "vault", "example.org.", RecordType::A));
}

#[test]
fn dns_single_label_and_removed_names_are_nxdomain() {
    let view = view();
    assert_eq!(a(&view, "c1", "localhostish."), (ResponseCode::NXDomain, vec![]));
    assert!(view.remove_container("c2"));
    assert_eq!(a(&view, "c1", "c2."), (ResponseCode::NXDomain, vec![]));
    assert_eq!(a(&view, "c1", "web."), (ResponseCode::NoError, vec![ip("10.0.9.4")]));
    assert!(!view.remove_container("c2"));
    assert!(is_forwarded(&view, "c1", "3.9.0.10.in-addr.arpa.", RecordType::PTR), "no longer a container's address");
}

#[test]
fn dns_updates_replace_a_container_and_the_whole_view() {
    let view = view();
    view.upsert_container(container("c2", vec![endpoint("blue", [10, 0, 9, 30], &["api"])])).unwrap();
    assert_eq!(a(&view, "c1", "c2."), (ResponseCode::NoError, vec![ip("10.0.9.30")]));
    assert_eq!(a(&view, "c1", "web."), (ResponseCode::NoError, vec![ip("10.0.9.4")]), "c2's old alias is gone");
    assert_eq!(a(&view, "c1", "api."), (ResponseCode::NoError, vec![ip("10.0.9.30")]));
    let skipped = view.replace_all(
        [DnsNetwork { name: "blue".into(), internal: false }],
        [
            container("c1", vec![endpoint("blue", [10, 0, 9, 2], &[])]),
            container("new", vec![endpoint("blue", [10, 0, 9, 7], &[])]),
        ],
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(view.container_count(), 2);
    assert_eq!(a(&view, "c1", "new."), (ResponseCode::NoError, vec![ip("10.0.9.7")]));
    assert_eq!(a(&view, "c1", "c4."), (ResponseCode::NXDomain, vec![]));
}

#[test]
fn dns_rejects_names_it_could_not_answer() {
    let view = view();
    for bad in ["", "a..b", "has space", "naïve", &"x".repeat(64)] {
        let err = view.upsert_container(container(bad, vec![endpoint("blue", [10, 0, 9, 99], &[])])).unwrap_err();
        assert!(err.to_string().contains("rename it"), "{err}");
    }
    assert!(view.upsert_network(DnsNetwork { name: "a.b".into(), internal: false }).is_err());
    assert!(view.upsert_container(container("ok", vec![endpoint("blue", [10, 0, 9, 99], &["db.local"])])).is_ok());
    assert_eq!(a(&view, "c1", "db.local."), (ResponseCode::NoError, vec![ip("10.0.9.99")]));
}

#[test]
fn dns_refuses_unknown_queriers_and_other_classes() {
    let view = view();
    assert_eq!(a(&view, "ghost", "c2.").0, ResponseCode::Refused);
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    message.add_query(q);
    let Outcome::Reply(bytes) = respond(&message.to_vec().unwrap(), "c1", &view, Transport::Udp, 0) else { panic!() };
    assert_eq!(Message::from_vec(&bytes).unwrap().metadata.response_code, ResponseCode::Refused);
}

/// 40 containers share an alias: 40 A records do not fit in 512 bytes.
fn crowded_view(count: u8) -> NameView {
    let view = view();
    for i in 0..count {
        view.upsert_container(container(&format!("m{i}"), vec![endpoint("blue", [10, 0, 20, i], &["many"])])).unwrap();
    }
    view
}

#[test]
fn dns_truncates_long_udp_answers() {
    let view = crowded_view(40);
    let (m, len) = ask_with(&view, "c1", "many.", RecordType::A, Transport::Udp, None, 0);
    assert!(m.metadata.truncation, "no EDNS: 512 bytes at most");
    assert!(m.answers.is_empty() && len <= 512);
    assert_eq!(m.queries.len(), 1);
    let (m, len) = ask_with(&view, "c1", "many.", RecordType::A, Transport::Udp, Some(1232), 0);
    assert!(!m.metadata.truncation && m.answers.len() == 40 && len > 512 && len <= 1232);
    let (m, _) = ask_with(&view, "c1", "many.", RecordType::A, Transport::Udp, Some(65000), 0);
    assert!(!m.metadata.truncation && m.edns.as_ref().unwrap().max_payload() == super::query::MAX_UDP_PAYLOAD);

    let view = crowded_view(100);
    let (m, len) = ask_with(&view, "c1", "many.", RecordType::A, Transport::Udp, Some(4096), 0);
    assert!(m.metadata.truncation && len <= 1232, "EDNS sizes are capped at 1232");
    let (m, len) = ask_with(&view, "c1", "many.", RecordType::A, Transport::Tcp, None, 0);
    assert!(!m.metadata.truncation && m.answers.len() == 100 && len > 1232, "TCP takes it all");
}

#[test]
fn dns_rejects_malformed_queries() {
    let view = view();
    let reply = |bytes: &[u8]| match respond(bytes, "c1", &view, Transport::Udp, 0) {
        Outcome::Reply(reply) => Some(Message::from_vec(&reply).unwrap()),
        Outcome::Drop => None,
        Outcome::Forward(f) => panic!("forwarded {f:?}"),
    };
    assert!(reply(&[0x12]).is_none(), "shorter than a header");
    let mut two = Message::new(9, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(Name::from_ascii("c2.").unwrap(), RecordType::A));
    two.add_query(Query::query(Name::from_ascii("c4.").unwrap(), RecordType::A));
    let m = reply(&two.to_vec().unwrap()).unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (9, ResponseCode::FormErr));
    two.metadata.message_type = MessageType::Response;
    assert!(reply(&two.to_vec().unwrap()).is_none(), "responses are never answered");
    let notify = Message::new(10, MessageType::Query, OpCode::Notify);
    assert_eq!(reply(&notify.to_vec().unwrap()).unwrap().metadata.response_code, ResponseCode::NotImp);
    // A header announcing one question, then a name that points at itself.
    let looped = [0, 11, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    assert_eq!(reply(&looped).unwrap().metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn dns_removing_every_holder_of_a_name_forgets_it() {
    let view = view();
    view.upsert_container(container("db1", vec![endpoint("blue", [10, 0, 9, 21], &["db.local"])])).unwrap();
    view.upsert_container(container("db2", vec![endpoint("red", [10, 0, 10, 21], &["db.local"])])).unwrap();
    assert_eq!(a(&view, "c3", "db.local."), (ResponseCode::NoError, vec![ip("10.0.10.21")]));
    assert!(view.remove_container("db2"));
    assert_eq!(a(&view, "c3", "db.local."), (ResponseCode::NXDomain, vec![]), "still blue's: hidden from red");
    assert!(view.remove_container("db1"));
    assert!(is_forwarded(&view, "c3", "db.local.", RecordType::A), "nobody's name any more: an upstream may know it");
}

#[test]
fn dns_odd_names_follow_the_forwarding_rule() {
    let view = view();
    // A label with a space or a dot inside cannot be a container's name.
    let odd = Name::from_labels(vec![&b"a b"[..], &b"x.y"[..], &b"example"[..]]).unwrap();
    let mut message = Message::new(5, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(odd, RecordType::A));
    let bytes = message.to_vec().unwrap();
    assert!(matches!(respond(&bytes, "c1", &view, Transport::Udp, 0), Outcome::Forward(_)));
    let code = |querier| match respond(&bytes, querier, &view, Transport::Udp, 0) {
        Outcome::Reply(reply) => Message::from_vec(&reply).unwrap().metadata.response_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code("vault"), ResponseCode::NXDomain, "internal: not forwarded");
    assert_eq!(code("ghost"), ResponseCode::Refused);
}

#[test]
fn dns_one_invalid_record_does_not_hide_the_others() {
    let view = view();
    let skipped = view.replace_all(
        [DnsNetwork { name: "blue".into(), internal: false }, DnsNetwork { name: "a.b".into(), internal: false }],
        [
            container("c1", vec![endpoint("blue", [10, 0, 9, 2], &[])]),
            container("bad name", vec![endpoint("blue", [10, 0, 9, 3], &[])]),
            container("c3", vec![endpoint("blue", [10, 0, 9, 4], &[])]),
        ],
    );
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(view.container_count(), 2);
    assert_eq!(a(&view, "c1", "c3."), (ResponseCode::NoError, vec![ip("10.0.9.4")]));
}

#[test]
fn dns_update_containers_changes_only_those_named() {
    let view = view();
    let skipped = view.update_containers(
        [
            container("c2", vec![endpoint("blue", [10, 0, 9, 40], &["api"])]),
            container("bad name", vec![endpoint("blue", [10, 0, 9, 41], &[])]),
        ],
        ["c3"],
    );
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(a(&view, "c1", "c2."), (ResponseCode::NoError, vec![ip("10.0.9.40")]));
    assert_eq!(a(&view, "c1", "api."), (ResponseCode::NoError, vec![ip("10.0.9.40")]));
    assert_eq!(a(&view, "c1", "c3."), (ResponseCode::NXDomain, vec![]), "c3 was removed");
    assert_eq!(a(&view, "c1", "c4."), (ResponseCode::NoError, vec![ip("10.0.9.4")]), "c4 is untouched");
    let m = ask(&view, "c1", "40.9.0.10.in-addr.arpa.", RecordType::PTR);
    let names: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(ptr) => Some(ptr.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["c2.blue."]);
}
