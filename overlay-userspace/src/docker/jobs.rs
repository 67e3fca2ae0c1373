//! The plugin's job task: it runs the [`Job`]s that calls queue and do not wait for,
//! each as its own task of its set, and when the plugin stops waits until they have
//! all returned (each stops at shutdown).

use std::sync::Arc;

use tokio::{sync::mpsc, task::JoinSet};

use super::{
    bindings, endpoints,
    plugin::{Job, Plugin},
};
use crate::store::{Store, Transact};

pub async fn run<S: Store + Transact>(p: Arc<Plugin<S>>, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            job = queue.recv() => match job {
                Some(job) => {
                    running.spawn(execute(p.clone(), job));
                }
                None => break,
            },
            Some(done) = running.join_next(), if !running.is_empty() => report(done),
            _ = p.shutdown.wait() => break,
        }
    }
    while let Some(done) = running.join_next().await {
        report(done);
    }
}

async fn execute<S: Store + Transact>(p: Arc<Plugin<S>>, job: Job) {
    match job {
        Job::SettleNetwork { docker_id } => bindings::settle(p, docker_id).await,
        Job::LearnName { endpoint_id } => endpoints::learn_name(p, endpoint_id).await,
    }
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!("a Docker plugin job failed: {error}");
    }
}
