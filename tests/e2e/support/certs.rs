//! Certificates for TLS tests, made with `openssl` in a scratch directory: a private CA
//! and certificates it signs for servers (`127.0.0.1`) and clients.

use std::path::Path;
use std::process::Command;

use super::require_binary;

/// Extensions of a server certificate for `127.0.0.1`.
pub const SERVER_EXT: &str = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n";
/// Extensions of a client certificate.
pub const CLIENT_EXT: &str =
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";

/// Runs `openssl args...` in `dir`; fails the test with openssl's message.
pub fn openssl(dir: &Path, args: &[&str]) {
    require_binary("openssl", "openssl");
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` arguments for a new unencrypted P-256 key.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Runs `openssl req` with a new key (written to `key`) and `args`.
fn request_with_new_key(dir: &Path, key: &str, args: &[&str]) {
    let mut all = vec!["req"];
    all.extend(NEW_EC_KEY);
    all.extend(["-keyout", key]);
    all.extend(args);
    openssl(dir, &all);
}

/// Creates a self-signed CA: `<name>.pem` and `<name>.key` in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    let subject = format!("/CN=promql-frontend test CA {name}");
    request_with_new_key(
        dir,
        &key,
        &["-x509", "-out", &pem, "-days", "2", "-subj", &subject],
    );
}

/// Creates `<name>.pem` and `<name>.key` in `dir`: a certificate for `cn` with the
/// extensions `ext`, signed by the CA `<ca>.pem`/`<ca>.key` (each with its own serial).
pub fn issue(dir: &Path, ca: &str, name: &str, cn: &str, ext: &str) {
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext).expect("write extensions");
    let (pem, key, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    request_with_new_key(dir, &key, &["-out", &csr, "-subj", &format!("/CN={cn}")]);
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext_file,
        ],
    );
}

/// Creates `ca.pem` and a `127.0.0.1` server certificate `srv.pem`/`srv.key` signed by
/// it in `dir`.
pub fn make_certs(dir: &Path) {
    make_ca(dir, "ca");
    issue(dir, "ca", "srv", "127.0.0.1", SERVER_EXT);
}
