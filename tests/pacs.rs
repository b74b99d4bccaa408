//! DICOMweb against a real Orthanc (Debian's `orthanc` + `orthanc-dicomweb`, installed by
//! scripts/setup.sh), started by the test on 127.0.0.1 with a temporary configuration and storage on
//! free ports and stopped when the test ends (even when it fails): store the shared files
//! (STOW-RS), search (QIDO-RS), retrieve (WADO-RS: pixels equal to the originals), store an exported
//! Secondary Capture back; wrong credentials, a wrong URL, a closed port, an HTTP 500 and a server
//! that stops mid-transfer each give a clear message.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cxrlens::pacs::{Server, StudyQuery, retrieve, search, store};

const PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An Orthanc process, killed on drop.
struct Orthanc {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Orthanc {
    fn start() -> Self {
        assert!(
            Path::new(PLUGIN).is_file(),
            "orthanc-dicomweb not installed (scripts/setup.sh installs orthanc and orthanc-dicomweb)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = serde_json::json!({
            "Name": "cxrlens-test",
            "StorageDirectory": dir.path().join("db"),
            "IndexDirectory": dir.path().join("db"),
            "HttpPort": port,
            "DicomPort": free_port(),
            "HttpBindAddress": "127.0.0.1",
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": true,
            "RegisteredUsers": { "reader": "s3cret" },
            "Plugins": [PLUGIN],
            "DicomWeb": { "Enable": true, "Root": "/dicom-web/" }
        });
        let path = dir.path().join("orthanc.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let child = Command::new("Orthanc")
            .arg(&path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("Orthanc runs (scripts/setup.sh installs it)");
        let orthanc = Self { child, port, _dir: dir };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(60), "Orthanc did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        orthanc
    }

    fn server(&self, password: &str) -> Server {
        Server {
            name: "test".into(),
            base_url: format!("http://127.0.0.1:{}/dicom-web", self.port),
            username: "reader".into(),
            password: password.into(),
        }
    }
}

fn files() -> Vec<PathBuf> {
    vec![
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/sample_chest.dcm"),
        common::dicom(common::RSNA),
        common::dicom(common::SIIM),
    ]
}

#[test]
fn store_search_retrieve_and_store_back_against_orthanc() {
    let orthanc = Orthanc::start();
    let server = orthanc.server("s3cret");
    assert_eq!(store(&server, &files()).unwrap(), 3);

    let found = search(
        &server,
        &StudyQuery {
            patient_id: "SAMPLE*".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let study = &found[0];
    assert_eq!(study.patient_id, "SAMPLE-0001");
    let all = search(&server, &StudyQuery::default()).unwrap();
    assert_eq!(all.len(), 3);

    // Retrieve: the pixels are the original's.
    let dest = tempfile::tempdir().unwrap();
    let mut seen = 0;
    let got = retrieve(
        &server,
        &study.study_uid,
        None,
        dest.path(),
        &mut |n| seen = n,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!((got.len(), seen), (1, 1));
    let original = cxrlens::io::load_image(&files()[0]).unwrap();
    let retrieved = cxrlens::io::load_image(&got[0]).unwrap();
    assert_eq!(original.image.values, retrieved.image.values);

    // An exported Secondary Capture goes back into the same study.
    let summary = cxrlens::export::summary::AnalysisSummary::default();
    let mut job =
        cxrlens::export::job::image_export(&original, &files()[0], None, None, &summary);
    job.kind = cxrlens::export::job::ExportKind::SecondaryCapture;
    job.out = dest.path().join("sc.dcm");
    cxrlens::export::job::run(&job).unwrap();
    assert_eq!(store(&server, std::slice::from_ref(&job.out)).unwrap(), 1);
    let again = search(
        &server,
        &StudyQuery {
            patient_id: "SAMPLE-0001".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(again.len(), 1, "the SC opened a new study");
    assert_eq!(again[0].instances, Some(2));
    assert!(again[0].modalities.contains("OT"), "{:?}", again[0].modalities);
}

#[test]
fn network_and_server_errors_are_explained() {
    let orthanc = Orthanc::start();
    let q = StudyQuery::default();
    let e = search(&orthanc.server("wrong"), &q).unwrap_err();
    assert!(e.contains("refused the credentials") && e.contains("401"), "{e}");
    let mut wrong_path = orthanc.server("s3cret");
    wrong_path.base_url = format!("http://127.0.0.1:{}/no-such-root", orthanc.port);
    let e = search(&wrong_path, &q).unwrap_err();
    assert!(e.contains("HTTP 404") && e.contains("base URL"), "{e}");
    let closed = Server {
        base_url: format!("http://127.0.0.1:{}/dicom-web", free_port()),
        ..Default::default()
    };
    let e = search(&closed, &q).unwrap_err();
    assert!(e.contains("cannot connect"), "{e}");
    let bad = Server {
        base_url: "ftp://example.org".into(),
        ..Default::default()
    };
    assert!(search(&bad, &q).unwrap_err().contains("http://"));
}

/// A one-shot HTTP server that answers every request with `response` and closes.
fn fake_server(response: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(response);
        }
    });
    port
}

#[test]
fn a_server_error_and_a_transfer_cut_short_are_reported() {
    let port = fake_server(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
    let server = Server {
        base_url: format!("http://127.0.0.1:{port}/dicom-web"),
        ..Default::default()
    };
    let e = search(&server, &StudyQuery::default()).unwrap_err();
    assert!(e.contains("HTTP 500"), "{e}");
    // Multipart promised (Content-Length 100000), 60 bytes sent, connection closed.
    let port = fake_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary=XYZ\r\nContent-Length: 100000\r\n\r\n--XYZ\r\nContent-Type: application/dicom\r\n\r\nDICM-partial-",
    );
    let server = Server {
        base_url: format!("http://127.0.0.1:{port}/dicom-web"),
        ..Default::default()
    };
    let dest = tempfile::tempdir().unwrap();
    let e = retrieve(
        &server,
        "1.2.3",
        None,
        dest.path(),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(e.contains("retrieve"), "{e}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}
