//! Where `--store` points: a folder on the local disk, or a bucket of an S3-compatible
//! object store (`s3://bucket/prefix`, credentials and endpoint from the AWS environment).

use std::path::Path;
use std::sync::Arc;

use crdtdir::folders::{Folder, S3};

use crate::output::{Failure, EXIT_ERROR, EXIT_REFUSED, EXIT_USAGE};

/// The object store `store` names (`s3://…`), opened and checked; `None` for a folder on
/// the local disk.
pub(crate) fn remote(store: &Path) -> Option<Result<Arc<dyn Folder>, Failure>> {
    let url = store.to_str().filter(|s| s.starts_with("s3://"))?;
    Some(S3::open(url).map(|s| Arc::new(s) as Arc<dyn Folder>).map_err(|e| {
        let (exit, code) = match e.kind() {
            std::io::ErrorKind::InvalidInput => (EXIT_USAGE, "usage"),
            std::io::ErrorKind::Unsupported => (EXIT_REFUSED, "refused"),
            _ => (EXIT_ERROR, "io"),
        };
        Failure {
            exit,
            code,
            message: e.to_string(),
            hint: (code == "io").then(|| {
                "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and (for a server other than AWS) AWS_ENDPOINT_URL".to_string()
            }),
        }
    }))
}
