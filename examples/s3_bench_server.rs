//! The S3-compatible server `bench/s3.sh` measures against: s3s-fs (buckets as folders under
//! ROOT, objects as files) over HTTP on 127.0.0.1 with SigV4, each connection with
//! `TCP_NODELAY` as S3 sets it. The `s3s-fs` binary does not set it, and a response written in
//! two pieces then waits for the client's delayed ACK (40 ms) before its second piece goes
//! out: 5,000 small CloudTrail objects took 15 s to ingest from it, on 5 s of CPU.
//!
//!     cargo run --release --example s3_bench_server -- ROOT PORT ACCESS_KEY SECRET_KEY

use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, port, access_key, secret_key] = &args[..] else {
        eprintln!("usage: s3_bench_server ROOT PORT ACCESS_KEY SECRET_KEY");
        std::process::exit(2);
    };
    let service = {
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| format!("{root}: {e:?}"))?;
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            access_key.as_str(),
            secret_key.as_str(),
        ));
        b.build()
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
