//! An S3-compatible server for tests: s3s-fs (objects as files under a temp folder) behind
//! real HTTP on 127.0.0.1, with SigV4 authentication, started in-process on its own runtime.
//!
//! Beyond s3s-fs it lists ETags (as S3 does, so incremental ingest can be tested), logs every
//! request (to prove what was and was not fetched), and injects faults: answer `503 Slow Down`
//! or drop the connection without an answer, for requests matching a method and a path.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "seclake-test-key";
pub const SECRET_KEY: &str = "seclake-test-secret-do-not-print";

/// What a fault does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer `503 Service Unavailable` with S3's `SlowDown` error.
    SlowDown,
    /// Close the connection without answering.
    Drop,
}

/// A fault for requests whose method is `method` (empty: any) and whose path and query
/// contain `path`, for the next `times` of them.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path: String,
    pub kind: FaultKind,
    pub times: usize,
}

#[derive(Default)]
struct State {
    log: Mutex<Vec<String>>,
    faults: Mutex<Vec<Fault>>,
}

/// A running server; stops when dropped.
pub struct S3Server {
    pub endpoint: String,
    root: TempDir,
    state: Arc<State>,
    _rt: tokio::runtime::Runtime,
}

impl S3Server {
    /// Start a server with the given buckets.
    pub fn start(buckets: &[&str]) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        for b in buckets {
            std::fs::create_dir_all(root.path().join(b)).unwrap();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(State::default());
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let service = {
            let mut b = s3s::service::S3ServiceBuilder::new(Listed {
                fs,
                root: root.path().to_path_buf(),
            });
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let st = state.clone();
        rt.spawn(async move {
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // As S3 does: without it a response written in two pieces waits for the
                // client's delayed ACK (40 ms) before its second piece goes out (Nagle).
                let _ = socket.set_nodelay(true);
                let (service, st) = (service.clone(), st.clone());
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (service, st) = (service.clone(), st.clone());
                    async move {
                        let line = format!(
                            "{} {}",
                            req.method(),
                            req.uri().path_and_query().map_or("", |p| p.as_str())
                        );
                        st.log.lock().unwrap().push(line.clone());
                        match st.fault_for(&line) {
                            Some(FaultKind::Drop) => Err(s3s::HttpError::new("dropped".into())),
                            Some(FaultKind::SlowDown) => Ok(http::Response::builder()
                                .status(503)
                                .body(s3s::Body::from(
                                    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                                        .to_string(),
                                ))
                                .unwrap()),
                            None => {
                                hyper::service::Service::call(&service, req).await
                            }
                        }
                    }
                });
                let conn = http.serve_connection(TokioIo::new(socket), svc).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            endpoint,
            root,
            state,
            _rt: rt,
        }
    }

    /// Environment for a client of this server: its endpoint and keys, and no AWS settings
    /// of the machine running the tests.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            ),
            ("AWS_PROFILE", ""),
            ("SECLAKE_S3_RETRIES", "4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Where the server keeps `bucket/key` on disk.
    pub fn file(&self, bucket_key: &str) -> PathBuf {
        self.root.path().join(bucket_key)
    }

    /// Store `bytes` as object `bucket/key` (written to the server's disk directly).
    pub fn put(&self, bucket_key: &str, bytes: &[u8]) {
        let p = self.file(bucket_key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// Every request so far (`GET /bucket/key?query`), and forget them.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.state.log.lock().unwrap())
    }

    /// Add a fault.
    pub fn fault(&self, f: Fault) {
        self.state.faults.lock().unwrap().push(f);
    }

    /// How many faulty answers are still to be given.
    pub fn faults_left(&self) -> usize {
        self.state
            .faults
            .lock()
            .unwrap()
            .iter()
            .map(|f| f.times)
            .sum()
    }

    /// Remove every fault.
    pub fn heal(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Every object under `bucket/prefix`, relative to the bucket, sorted (skipping
    /// s3s-fs's own temporary files).
    pub fn keys(&self, bucket_prefix: &str) -> Vec<String> {
        let (bucket, _) = bucket_prefix.split_once('/').unwrap_or((bucket_prefix, ""));
        let base = self.root.path().join(bucket);
        let mut out = Vec::new();
        crate::util::walk(&base, &base, &mut out);
        out.retain(|k| format!("{bucket}/{k}").starts_with(bucket_prefix));
        out.sort();
        out
    }
}

impl State {
    fn fault_for(&self, line: &str) -> Option<FaultKind> {
        let mut faults = self.faults.lock().unwrap();
        let f = faults.iter_mut().find(|f| {
            f.times > 0
                && (f.method.is_empty() || line.starts_with(&format!("{} ", f.method)))
                && line.contains(&f.path)
        })?;
        f.times -= 1;
        Some(f.kind)
    }
}

/// s3s-fs, with ETags in listings as S3 has them (the MD5 of a single-part object).
struct Listed {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
}

fn md5_hex(bytes: &[u8]) -> String {
    use s3s::crypto::Checksum;
    let mut h = s3s::crypto::Md5::new();
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait::async_trait]
impl S3 for Listed {
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let mut resp = self.fs.list_objects_v2(req).await?;
        for o in resp.output.contents.iter_mut().flatten() {
            if let Some(key) = &o.key
                && let Ok(bytes) = std::fs::read(self.root.join(&bucket).join(key))
            {
                o.e_tag = Some(ETag::Strong(md5_hex(&bytes)));
            }
        }
        Ok(resp)
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.fs.get_object(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fs.head_object(req).await
    }
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.fs.put_object(req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.fs.copy_object(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fs.delete_objects(req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.fs.create_multipart_upload(req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.fs.upload_part(req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.fs.complete_multipart_upload(req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.fs.abort_multipart_upload(req).await
    }
}
