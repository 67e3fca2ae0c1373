//! The members of an etcd cluster and which one a request goes to.
//!
//! The `etcd-client` crate balances one channel over every endpoint, but a member that
//! is down stays in that balance: its lazy connection reports itself ready and fails each
//! request sent to it ("tcp connect error"), so with one member of three dead about half
//! the requests fail. Here each member has a client of its own, and a request goes to the
//! member that answered last; when that member cannot take it the request moves on to
//! the next one, within the request's time bound:
//!
//! - **Not sent** (the connection could not be made, or the member refused up front
//!   because it has no leader): every request moves on.
//! - **Perhaps applied** (the connection broke during the request): reads and other
//!   requests that can be repeated move on; a write returns the error, since repeating it
//!   could apply it twice (the caller decides), and the next request starts at the next
//!   member.
//! - **No answer in time**: a request that can be repeated gets half its time on one
//!   member and then moves on (a member whose leader just died holds requests until it
//!   notices; one cut off by the network never answers); a write returns the timeout.
//!   Either way the next request starts at the next member.
//!
//! Every request carries etcd's "require leader" flag, so a member cut off from the
//! quorum answers "no leader" at once instead of serving nothing, and etcd ends its
//! watch streams: [`super::super::watch_prefix`] resumes them on a member that leads or
//! follows a leader.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use etcd_client::{Client, ConnectOptions};
use tokio::{sync::OnceCell, time::Instant};

use crate::store::{Credentials, StoreError};

/// Whether a request may be sent again after a failure that left it perhaps applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Reads, keep-alives, revocations, unconditional puts: doing it twice is doing it once.
    Safe,
    /// Conditional writes and deletes: a second try would see the first one's effect.
    Unsafe,
}

/// How a failed attempt on one member bears on the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The member did not take the request: another one may.
    NotSent,
    /// The connection broke while the request was out.
    Interrupted,
    /// An answer (bad request, permission, lease not found…): the same from any member.
    Final,
}

struct Member {
    url: String,
    /// Made on first use: with credentials, making it authenticates, which needs the
    /// member to be up.
    client: OnceCell<Client>,
}

pub(super) struct Members {
    members: Vec<Member>,
    options: ConnectOptions,
    credentials: Option<Credentials>,
    /// Where the next request starts: the member that answered last.
    preferred: AtomicUsize,
    /// Shown in messages: every endpoint, comma-separated.
    pub(super) endpoints: String,
}

/// While every member answers "no leader" (an election is under way), wait this long
/// before asking them again.
const ELECTION_PAUSE: Duration = Duration::from_millis(100);

impl Members {
    pub(super) fn new(
        urls: Vec<String>,
        endpoints: String,
        options: ConnectOptions,
        credentials: Option<Credentials>,
    ) -> Arc<Self> {
        let members = urls.into_iter().map(|url| Member { url, client: OnceCell::new() }).collect();
        Arc::new(Members { members, options, credentials, preferred: AtomicUsize::new(0), endpoints })
    }

    async fn client(&self, member: &Member) -> Result<Client, etcd_client::Error> {
        member
            .client
            .get_or_try_init(|| Client::connect([member.url.as_str()], Some(self.options.clone())))
            .await
            .cloned()
    }

    /// Sends `request` to the members in turn, from the preferred one, until one
    /// answers, within `timeout`.
    pub(super) async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        repeat: Repeat,
        timeout: Duration,
        request: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + timeout;
        let count = self.members.len();
        let timed_out = || StoreError::Timeout { endpoints: self.endpoints.clone(), operation, timeout };
        loop {
            let first = self.preferred.load(Ordering::Relaxed) % count;
            let mut refusals = Refusals::default();
            for step in 0..count {
                let index = (first + step) % count;
                let member = &self.members[index];
                let attempt = async {
                    let client = self.client(member).await.map_err(|e| (e, true))?;
                    request(client).await.map_err(|e| (e, false))
                };
                // A member whose leader just died holds requests until it notices (an
                // election timeout, a second by default): a request that may be repeated
                // gives it half the time and then tries the next member.
                let attempt_deadline = match repeat {
                    Repeat::Safe => deadline.min(Instant::now() + timeout / 2),
                    Repeat::Unsafe => deadline,
                };
                let error = match tokio::time::timeout_at(attempt_deadline, attempt).await {
                    Ok(Ok(value)) => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(value);
                    }
                    Ok(Err((error, connecting))) => {
                        if connecting {
                            self.connect_error(&error)?;
                        }
                        error
                    }
                    Err(_) => {
                        self.preferred.store(index + 1, Ordering::Relaxed);
                        if repeat == Repeat::Safe && Instant::now() < deadline {
                            tracing::debug!("etcd member {} did not answer {operation} in time", member.url);
                            continue;
                        }
                        return Err(timed_out());
                    }
                };
                match classify(&error) {
                    Failure::NotSent => {
                        tracing::debug!("etcd member {} did not take {operation}: {error}", member.url);
                    }
                    Failure::Interrupted if repeat == Repeat::Safe => {
                        tracing::debug!("{operation} was interrupted on etcd member {}: {error}", member.url);
                    }
                    Failure::Interrupted => {
                        self.preferred.store(index + 1, Ordering::Relaxed);
                        return Err(super::request_error(operation, error));
                    }
                    Failure::Final => return Err(super::request_error(operation, error)),
                }
                refusals.note(error);
            }
            // No member took it. An election ends within a second or two: ask again while
            // the request has time. Members that are all down fail the request at once,
            // and the caller's backoff takes over.
            let leaderless = refusals.leaderless();
            let error = refusals.into_error().map(|e| super::request_error(operation, e)).unwrap_or_else(timed_out);
            if !leaderless || Instant::now() + ELECTION_PAUSE >= deadline {
                return Err(error);
            }
            tokio::time::sleep(ELECTION_PAUSE).await;
        }
    }

    /// Refused credentials are final; anything else about making a member's client is
    /// that member's trouble (it is down), left to [`classify`].
    fn connect_error(&self, error: &etcd_client::Error) -> Result<(), StoreError> {
        // etcd answers a bad user or password with "etcdserver: authentication failed".
        if let (Some(credentials), etcd_client::Error::GRpcStatus(status)) = (&self.credentials, error)
            && (status.message().contains("authentication failed") || status.message().contains("permission denied"))
        {
            return Err(StoreError::Auth { user: credentials.user.clone(), message: status.message().to_owned() });
        }
        Ok(())
    }
}

/// Why the members of one pass did not take a request.
#[derive(Default)]
struct Refusals {
    /// A live member's "no leader": what the user needs to hear, whatever the dead
    /// members said after it.
    no_leader: Option<etcd_client::Error>,
    last: Option<etcd_client::Error>,
}

impl Refusals {
    fn note(&mut self, error: etcd_client::Error) {
        if says_no_leader(&error) {
            self.no_leader = Some(error);
        } else {
            self.last = Some(error);
        }
    }

    fn leaderless(&self) -> bool {
        self.no_leader.is_some()
    }

    fn into_error(self) -> Option<etcd_client::Error> {
        self.no_leader.or(self.last)
    }
}

fn says_no_leader(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains("no leader"))
}

fn classify(error: &etcd_client::Error) -> Failure {
    use tonic::Code;
    let status = match error {
        etcd_client::Error::GRpcStatus(status) => status,
        // Building a connection failed: nothing was sent.
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => return Failure::NotSent,
        // A stream (watch, keep-alive) ended: the request may have been seen.
        etcd_client::Error::WatchError(_) => return Failure::Interrupted,
        _ => return Failure::Final,
    };
    // etcd's own refusals before it takes a request in: no leader behind this member
    // ("require leader"), or a member that cannot serve this version of the API.
    if status.message().contains("etcdserver: no leader") || status.message().contains("etcdserver: not capable") {
        return Failure::NotSent;
    }
    if never_connected(status) {
        return Failure::NotSent;
    }
    match status.code() {
        // Transport failures arrive as Unavailable (connection reset, member stopping),
        // Unknown or Internal (HTTP/2 errors, a broken stream) or Cancelled.
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled => {
            if std::error::Error::source(status).is_some() || status.code() == Code::Unavailable {
                Failure::Interrupted
            } else {
                Failure::Final
            }
        }
        _ => Failure::Final,
    }
}

/// Whether the status comes from a connection that could not be made: the TCP connect
/// failed (refused, unreachable, timed out) before any byte of the request went out.
fn never_connected(status: &tonic::Status) -> bool {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(error) = source {
        // hyper-util's connector names its errors so; the io::Error kinds say the same.
        if error.to_string().starts_with("tcp connect error") {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_before_the_request_are_not_sent_and_answers_are_final() {
        let no_leader = etcd_client::Error::GRpcStatus(tonic::Status::unavailable("etcdserver: no leader"));
        assert_eq!(classify(&no_leader), Failure::NotSent);
        assert!(says_no_leader(&no_leader));
        let refused = tonic::Status::from_error(Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)));
        assert_eq!(classify(&etcd_client::Error::GRpcStatus(refused)), Failure::NotSent);
        let reset = tonic::Status::from_error(Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
        assert_eq!(classify(&etcd_client::Error::GRpcStatus(reset)), Failure::Interrupted);
        let bad = etcd_client::Error::GRpcStatus(tonic::Status::invalid_argument("etcdserver: key is not provided"));
        assert_eq!(classify(&bad), Failure::Final);
        let denied = etcd_client::Error::GRpcStatus(tonic::Status::permission_denied("etcdserver: permission denied"));
        assert_eq!(classify(&denied), Failure::Final);
        assert_eq!(classify(&etcd_client::Error::LeaseKeepAliveError("lease not found".into())), Failure::Final);
    }

    #[test]
    fn a_pass_without_a_leader_says_so_even_if_a_dead_member_answered_last() {
        let no_leader = || etcd_client::Error::GRpcStatus(tonic::Status::unavailable("etcdserver: no leader"));
        let dead = || {
            etcd_client::Error::GRpcStatus(tonic::Status::from_error(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))))
        };
        let mut refusals = Refusals::default();
        refusals.note(no_leader());
        refusals.note(dead());
        assert!(refusals.leaderless());
        assert!(refusals.into_error().is_some_and(|e| says_no_leader(&e)));

        let mut refusals = Refusals::default();
        refusals.note(dead());
        assert!(!refusals.leaderless());
        assert!(refusals.into_error().is_some_and(|e| !says_no_leader(&e)));
        assert!(Refusals::default().into_error().is_none());
    }
}
