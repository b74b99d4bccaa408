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
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        let orthanc = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Orthanc did not start"
            );
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
    let mut job = cxrlens::export::job::image_export(&original, &files()[0], None, None, &summary);
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
    // Two series now: the CR and the SC; retrieving the SC's series alone gives one file.
    let series = cxrlens::pacs::list_series(&server, &study.study_uid).unwrap();
    assert_eq!(series.len(), 2, "{series:?}");
    let sc_series = series
        .iter()
        .find(|s| s.modality == "OT")
        .expect("the SC's series");
    let only = tempfile::tempdir().unwrap();
    let got = retrieve(
        &server,
        &study.study_uid,
        Some(&sc_series.series_uid),
        only.path(),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        cxrlens::io::load_image(&got[0]).unwrap().color.is_some(),
        "the SC is RGB"
    );
    assert_eq!(again[0].instances, Some(2));
    assert!(
        again[0].modalities.contains("OT"),
        "{:?}",
        again[0].modalities
    );
}

#[test]
fn network_and_server_errors_are_explained() {
    let orthanc = Orthanc::start();
    let q = StudyQuery::default();
    let e = search(&orthanc.server("wrong"), &q).unwrap_err();
    assert!(
        e.contains("refused the credentials") && e.contains("401"),
        "{e}"
    );
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

/// The PACS window in the real app (egui_kittest): search the Orthanc, retrieve a study into the
/// viewer, send an exported Secondary Capture back.
#[test]
fn the_pacs_window_searches_retrieves_into_the_viewer_and_sends_back() {
    use cxrlens::ui::Command;
    use cxrlens::{AppOptions, CxrApp};
    let orthanc = Orthanc::start();
    let server = orthanc.server("s3cret");
    store(&server, &files()[..2]).unwrap();
    common::isolate_user_dirs();
    let cache = tempfile::tempdir().unwrap();
    // SAFETY: set before the app starts any thread that reads it; the retrieve folder goes here.
    unsafe { std::env::set_var("XDG_CACHE_HOME", cache.path()) };
    let mut h = egui_kittest::Harness::builder()
        .with_size([1200.0, 800.0])
        .build_eframe(move |cc| {
            CxrApp::new(
                cc,
                AppOptions {
                    backend: cxrlens::ml::device::BackendChoice::Flex,
                    ..Default::default()
                },
            )
        });
    let step_until = |h: &mut egui_kittest::Harness<'_, CxrApp>,
                      what: &str,
                      done: &dyn Fn(&mut CxrApp) -> bool| {
        let start = Instant::now();
        while !done(h.state_mut()) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "timed out waiting for {what}"
            );
            h.step();
            std::thread::sleep(Duration::from_millis(20));
        }
        h.step();
    };
    h.state_mut().push_command(Command::TogglePacs);
    {
        let panel = h.state_mut().pacs_panel_mut();
        panel.servers = vec![server.clone()];
        panel.query.patient_id = "SAMPLE*".into();
    }
    h.run_steps(2);
    h.state_mut().push_command(Command::PacsSearch);
    step_until(&mut h, "the search", &|a| {
        a.pacs_panel_mut().busy.is_none() && a.pacs_panel_mut().status.is_some()
    });
    let rows = h.state_mut().pacs_panel_mut().results.clone();
    assert_eq!(rows.len(), 1, "{:?}", h.state_mut().pacs_panel_mut().status);
    // Through the window's own button (one study listed, so one "Series" button).
    {
        use egui_kittest::kittest::Queryable;
        h.get_by_role_and_label(egui::accesskit::Role::Button, "Series")
            .click();
    }
    step_until(&mut h, "the series list", &|a| {
        a.pacs_panel_mut().series.is_some()
    });
    let (study, series) = h.state_mut().pacs_panel_mut().series.clone().unwrap();
    assert_eq!(
        (study.as_str(), series.len()),
        (rows[0].study_uid.as_str(), 1)
    );
    assert_eq!(series[0].modality, "CR");
    h.state_mut()
        .push_command(Command::PacsRetrieve(rows[0].study_uid.clone()));
    step_until(&mut h, "the retrieved study in the viewer", &|a| {
        a.viewer().is_some()
    });
    let v = h.state_mut().viewer().unwrap().path.clone();
    assert!(v.starts_with(cache.path()), "opened {}", v.display());
    let original = cxrlens::io::load_image(&files()[0]).unwrap();
    assert_eq!(
        h.state_mut().viewer().unwrap().loaded.image.values,
        original.image.values
    );

    // Export a Secondary Capture, then send it.
    let out = cache.path().join("sc.dcm");
    h.state_mut().push_command(Command::ExportTo(
        cxrlens::export::job::ExportChoice {
            kind: cxrlens::export::job::ExportKind::SecondaryCapture,
            screen: false,
        },
        out.clone(),
    ));
    step_until(&mut h, "the SC export", &|a| {
        a.pacs_panel_mut().last_sc.is_some()
    });
    h.state_mut().push_command(Command::PacsStore(out));
    step_until(&mut h, "the store", &|a| {
        a.pacs_panel_mut().busy.is_none()
            && a.pacs_panel_mut()
                .status
                .as_deref()
                .is_some_and(|s| s.contains("stored"))
    });
    let again = search(
        &server,
        &StudyQuery {
            patient_id: "SAMPLE-0001".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(again[0].instances, Some(2));
}
