//! Posture through the real binary: resource snapshots in both shapes, policy evaluation,
//! compliance results, suppressions, alert dedup across runs, policy tests.

use crate::util::TestLake;

/// The S3 tutorial's example bucket: public READ grant, AES256 without KMS, no public access
/// block; versioning on, logging on, no TLS-only policy.
const TUTORIAL: &str = r#"{
  "AccountId": "123456789012", "Arn": "arn:aws:s3:::tutorial-bucket", "Region": "us-east-1",
  "Name": "tutorial-bucket", "Owner": {"DisplayName": "owner", "ID": "abc"}, "Tags": {"env": "prod"},
  "EncryptionRules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": null}}],
  "Grants": [{"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"},
             {"Grantee": {"Type": "CanonicalUser", "ID": "abc"}, "Permission": "FULL_CONTROL"}],
  "LifecycleRules": null, "LoggingPolicy": {"TargetBucket": "logs", "TargetPrefix": "tutorial/"},
  "MFADelete": null, "ObjectLockConfiguration": null, "Policy": null,
  "PublicAccessBlockConfiguration": null, "Versioning": "Enabled", "TimeCreated": "2019-01-01T00:00:00Z"
}"#;

/// Every setting null.
const EMPTY: &str = r#"{"Arn": "arn:aws:s3:::empty-bucket", "Name": "empty-bucket", "AccountId": null,
  "EncryptionRules": null, "Grants": null, "LoggingPolicy": null, "Policy": null, "Versioning": null}"#;

/// An AWS Config snapshot with one compliant-looking bucket and one EC2 instance.
const CONFIG: &str = r#"{"fileVersion": "1.0", "configurationItems": [
  {"configurationItemCaptureTime": "2020-05-12T10:00:00.000Z", "resourceType": "AWS::S3::Bucket",
   "resourceId": "locked-bucket", "resourceName": "locked-bucket", "ARN": "arn:aws:s3:::locked-bucket",
   "awsRegion": "us-east-1", "awsAccountId": "123456789012",
   "configuration": {"name": "locked-bucket", "owner": {"id": "abc"}, "creationDate": "2019-01-01T00:00:00.000Z"},
   "supplementaryConfiguration": {
     "AccessControlList": "{\"grantList\":[{\"grantee\":{\"id\":\"abc\"},\"permission\":\"FullControl\"}]}",
     "BucketLoggingConfiguration": {"destinationBucketName": "logs", "logFilePrefix": "locked/"},
     "BucketVersioningConfiguration": {"status": "Enabled", "isMfaDeleteEnabled": false},
     "ServerSideEncryptionConfiguration": {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyID": "k"}}]},
     "PublicAccessBlockConfiguration": {"blockPublicAcls": true, "ignorePublicAcls": true, "blockPublicPolicy": true, "restrictPublicBuckets": true},
     "BucketPolicy": {"policyText": "{\"Statement\":[{\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"s3:*\",\"Condition\":{\"Bool\":{\"aws:SecureTransport\":\"false\"}}}]}"}
   },
   "tags": {}},
  {"configurationItemCaptureTime": "2020-05-12T10:00:00.000Z", "resourceType": "AWS::EC2::Instance", "resourceId": "i-1"}
]}"#;

fn statuses(t: &TestLake, resource: &str) -> String {
    t.csv(&format!(
        "SELECT policy_id, status FROM panther_cloudsecurity.compliance \
             WHERE resource_id = 'arn:aws:s3:::{resource}' ORDER BY policy_id"
    ))
}

#[test]
fn the_tutorial_bucket_fails_exactly_what_it_should_and_alerts_once() {
    let t = TestLake::new();
    let dir = t.path("snapshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tutorial.json"), TUTORIAL).unwrap();
    std::fs::write(dir.join("empty.json"), EMPTY).unwrap();
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    let out = t.ok(&["resources", "ingest", dir.to_str().unwrap()]);
    assert!(
        out.contains("3 S3 buckets stored, 1 of other types ignored"),
        "{out}"
    );
    let again = t.ok(&["resources", "ingest", dir.to_str().unwrap()]);
    assert!(again.contains("0 ingested, 3 skipped"), "{again}");

    let out = t.run_code(&["policies", "eval"], 1);
    assert!(
        out.contains("3 resources, 9 policies; alerts raised: "),
        "{out}"
    );
    assert_eq!(
        statuses(&t, "tutorial-bucket"),
        "policy_id,status\n\
         AWS.S3.Bucket.Encryption,PASS\n\
         AWS.S3.Bucket.Logging,PASS\n\
         AWS.S3.Bucket.PublicAccessBlock,FAIL\n\
         AWS.S3.Bucket.PublicRead,FAIL\n\
         AWS.S3.Bucket.PublicWrite,PASS\n\
         AWS.S3.Bucket.SecureAccess,FAIL\n\
         AWS.S3.Bucket.Versioning,PASS\n\
         Seclake.S3.Bucket.KMSEncryption,FAIL\n\
         Seclake.S3.Bucket.ObjectLock,PASS\n"
    );
    // Every setting null: fails the "must have" policies, never errors.
    assert_eq!(
        statuses(&t, "empty-bucket"),
        "policy_id,status\n\
         AWS.S3.Bucket.Encryption,FAIL\n\
         AWS.S3.Bucket.Logging,FAIL\n\
         AWS.S3.Bucket.PublicAccessBlock,FAIL\n\
         AWS.S3.Bucket.PublicRead,PASS\n\
         AWS.S3.Bucket.PublicWrite,PASS\n\
         AWS.S3.Bucket.SecureAccess,FAIL\n\
         AWS.S3.Bucket.Versioning,FAIL\n\
         Seclake.S3.Bucket.KMSEncryption,FAIL\n\
         Seclake.S3.Bucket.ObjectLock,PASS\n"
    );
    // The AWS Config item passes everything.
    let locked = statuses(&t, "locked-bucket");
    assert!(
        !locked.contains("FAIL") && locked.lines().count() == 10,
        "{locked}"
    );

    let alerts = |t: &TestLake| {
        t.csv("SELECT count(*) AS n, sum(event_count) AS events FROM panther_views.alerts WHERE origin = 'policy'",
        )
    };
    assert_eq!(alerts(&t), "n,events\n10,10\n");
    // An unchanged failure does not raise again: same alerts, counted twice.
    let out = t.run_code(&["policies", "eval"], 1);
    assert!(out.contains("alerts raised: 0"), "{out}");
    assert_eq!(alerts(&t), "n,events\n10,20\n");
    assert_eq!(
        t.csv("SELECT count(*) AS n FROM panther_cloudsecurity.compliance"),
        "n\n54\n"
    );
}

#[test]
fn suppressions_newest_snapshot_and_custom_policies() {
    let t = TestLake::new();
    let pol = t.path("policies");
    std::fs::create_dir_all(&pol).unwrap();
    std::fs::write(
        pol.join("versioning.yml"),
        "PolicyID: AWS.S3.Bucket.Versioning\nResourceTypes: [AWS.S3.Bucket]\nSeverity: Low\n\
         Condition: coalesce(versioning, '') = 'Enabled'\nSuppressions: ['arn:aws:s3:::scratch-*']\n\
         Tests: [{Name: on, ExpectedResult: true, Resource: {Name: b, Versioning: Enabled}}]\n",
    )
    .unwrap();
    std::fs::write(
        pol.join("broken.yml"),
        "PolicyID: Test.Broken\nResourceTypes: [AWS.S3.Bucket]\nSeverity: Low\n\
         Condition: CAST(name AS INT) > 0\n\
         Tests: [{Name: t, ExpectedResult: true, Resource: {Name: '5'}}]\n",
    )
    .unwrap();
    let snap = t.path("s");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(
        snap.join("old.json"),
        r#"{"Arn": "arn:aws:s3:::b1", "Name": "b1", "Versioning": null, "SnapshotTime": "2020-05-01T00:00:00Z"}
{"Arn": "arn:aws:s3:::scratch-1", "Name": "scratch-1", "Versioning": null}"#,
    )
    .unwrap();
    std::fs::write(
        snap.join("new.json"),
        r#"[{"Arn": "arn:aws:s3:::b1", "Name": "b1", "Versioning": "Enabled", "SnapshotTime": "2020-05-02T00:00:00Z"}]"#,
    )
    .unwrap();
    let p = pol.to_str().unwrap();
    t.ok(&["resources", "ingest", snap.to_str().unwrap()]);
    let out = t.run(&[
        "--policies",
        p,
        "policies",
        "eval",
        "--policy",
        // Ids as typed on a command line: letter case aside.
        "aws.s3.bucket.versioning",
        "--policy",
        "Test.Broken",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    // Newest snapshot of b1 has versioning; scratch-1 is suppressed.
    assert_eq!(
        t.csv("SELECT resource_id, policy_id, status FROM panther_cloudsecurity.compliance ORDER BY 1, 2"
        ),
        "resource_id,policy_id,status\n\
         arn:aws:s3:::b1,AWS.S3.Bucket.Versioning,PASS\n\
         arn:aws:s3:::b1,Test.Broken,ERROR\n\
         arn:aws:s3:::scratch-1,Test.Broken,ERROR\n",
        "{text}"
    );
    assert!(text.contains("┆ 1    ┆ 0    ┆ 0     ┆ 1 "), "{text}");
    assert!(
        text.contains("error: Test.Broken on arn:aws:s3:::b1: "),
        "{text}"
    );
    let out = t.ok(&["--policies", p, "policies", "test"]);
    assert!(
        out.contains("11 policies") && out.contains(" 0 failed"),
        "{out}"
    );
    std::fs::write(
        pol.join("bad.yml"),
        "PolicyID: Bad\nResourceTypes: [AWS.S3.Bucket]\nSeverity: Low\nCondition: name\n",
    )
    .unwrap();
    let out = t.run(&["--policies", p, "policies", "eval"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Bad") && err.contains("bad.yml") && err.contains("boolean"),
        "{err}"
    );
}

/// The bundled sample (`data/resources/`): `ingest` sets the snapshots aside with a note
/// instead of failing, `resources ingest` stores them, and the policies find what each bucket
/// was written to show; before any snapshot, `policies eval` says how to add some.
#[test]
fn the_bundled_snapshots_through_ingest_resources_and_policies() {
    let t = TestLake::new();
    let empty = t.ok(&["policies", "eval"]);
    assert!(
        empty.contains("no bucket snapshots in this lake yet"),
        "{empty}"
    );
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/resources");
    let sample = sample.to_str().unwrap();
    for _ in 0..2 {
        let out = t.ok(&["ingest", "--no-progress", sample]);
        assert!(
            out.contains("files: 2 found, 0 ingested, 0 skipped (already ingested), 2 not logs (see notes), 0 failed"),
            "{out}"
        );
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("note: ") && l.contains("`seclake resources ingest`"))
                .count(),
            2,
            "{out}"
        );
    }
    let out = t.ok(&["resources", "ingest", sample]);
    assert!(
        out.contains("4 S3 buckets stored, 1 of other types ignored"),
        "{out}"
    );
    t.run_code(&["policies", "eval"], 1);
    assert_eq!(
        t.csv(
            "SELECT resource_id, count(*) FILTER (WHERE status = 'FAIL') AS fails, \
             string_agg(CASE WHEN status = 'FAIL' THEN policy_id END, ' ' ORDER BY policy_id) AS failed \
             FROM panther_cloudsecurity.compliance GROUP BY 1 ORDER BY 1"
        ),
        "resource_id,fails,failed\n\
         arn:aws:s3:::app-tmp-1,7,AWS.S3.Bucket.Encryption AWS.S3.Bucket.Logging AWS.S3.Bucket.PublicAccessBlock AWS.S3.Bucket.PublicWrite AWS.S3.Bucket.SecureAccess AWS.S3.Bucket.Versioning Seclake.S3.Bucket.KMSEncryption\n\
         arn:aws:s3:::cdn-assets-prod,4,AWS.S3.Bucket.PublicAccessBlock AWS.S3.Bucket.SecureAccess AWS.S3.Bucket.Versioning Seclake.S3.Bucket.KMSEncryption\n\
         arn:aws:s3:::s3-data-customers-us-east-1,0,\n\
         arn:aws:s3:::test-public-bucket,4,AWS.S3.Bucket.PublicAccessBlock AWS.S3.Bucket.PublicRead AWS.S3.Bucket.SecureAccess Seclake.S3.Bucket.KMSEncryption\n"
    );
}
