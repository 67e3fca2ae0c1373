//! Two byte streams joined both ways, with half-closes carried over: when one side stops
//! sending (`docker run -i` at the end of its stdin), the other side's writing half is
//! shut, and the answer still flows back until its sender closes too. This is how
//! `echo hi | docker run -i --rm IMAGE cat` prints `hi`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Copies `a` to `b` and `b` to `a` until both directions have ended.
pub async fn splice<A, B>(a: A, b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    tokio::join!(one_way(a_read, b_write), one_way(b_read, a_write));
}

/// Copies until the end of `from`, then shuts `to`'s writing half. A peer that closes
/// without TLS's close_notify (UnexpectedEof) has ended its stream all the same; any
/// other error ends this direction.
async fn one_way<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(mut from: R, mut to: W) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                if error.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!("stream: reading: {error}");
                }
                break;
            }
        };
        if let Err(error) = to.write_all(&buffer[..n]).await {
            tracing::debug!("stream: writing: {error}");
            break;
        }
        if let Err(error) = to.flush().await {
            tracing::debug!("stream: flushing: {error}");
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn half_closes_cross_over_and_answers_still_flow() {
        // client <-> (a | b) <-> server: the client sends, closes its writing half, and
        // still reads what the server answers after seeing the end.
        let (mut client, a) = tokio::io::duplex(64);
        let (b, mut server) = tokio::io::duplex(64);
        let joined = tokio::spawn(splice(a, b));
        client.write_all(b"hi\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hi\n");
        server.write_all(b"hi\n").await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"hi\n");
        joined.await.unwrap();
    }
}
