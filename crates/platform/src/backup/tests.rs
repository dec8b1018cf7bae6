//! The record format: what a backup line looks like, what a restore page accepts, the cursor
//! and the restore gate.

use super::*;
use crate::clients::ClientRegistration;
use serde_json::json;

const GRANT_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn header() -> String {
    Record::Header(Header::new("b-1", 1_700_000_000)).to_line()
}

fn client_json() -> String {
    let client = ClientRegistration::parse(
        &json!({"client_id": "app", "client_name": "App", "client_type": "public", "redirect_uris": ["https://app.example/cb"], "scope": "patient/*.rs"})
            .to_string(),
    )
    .unwrap()
    .into_client()
    .unwrap();
    serde_json::to_string(&client).unwrap()
}

fn user_json() -> String {
    json!({"username": "ned", "display_name": "Ned", "fhir_user": "Patient/p1", "password_hash": "pbkdf2-sha256$1$c2FsdA$aGFzaA"}).to_string()
}

fn version_line(version: i64, deleted: bool) -> String {
    let content =
        json!({"resourceType": "Patient", "id": "p1", "meta": {"versionId": version.to_string(), "lastUpdated": "2026-12-02T10:00:00.000Z"}, "gender": "male"});
    let stored = StoredVersion {
        resource_type: "Patient".into(),
        id: "p1".into(),
        version,
        last_updated: "2026-12-02T10:00:00.000Z".into(),
        deleted,
        content: RawValue::from_string(content.to_string()).unwrap(),
    };
    Record::Version(VersionLine::new("patient/p1", stored)).to_line()
}

fn key_json() -> String {
    json!({"jwk": {"kty": "EC", "kid": "k1", "alg": "ES256", "crv": "P-256", "x": "eA", "y": "eQ", "d": "ZA"}, "created_at": 1, "activates_at": 1}).to_string()
}

fn account_json() -> String {
    serde_json::to_string(&AccountState::default()).unwrap()
}

fn grant_json() -> String {
    json!({"state": "closed", "reason": "revoked"}).to_string()
}

#[test]
fn every_kind_of_line_round_trips_byte_for_byte() {
    let lines = [
        header(),
        Record::kv(SETTINGS_KEY, &serde_json::to_string(&ServerSettings::default()).unwrap()).to_line(),
        Record::kv("client:app", &client_json()).to_line(),
        Record::kv("user:ned", &user_json()).to_line(),
        Record::kv("simulate:app", "not json at all").to_line(),
        Record::key(RawValue::from_string(key_json()).unwrap()).to_line(),
        Record::account("ned", RawValue::from_string(account_json()).unwrap()).to_line(),
        Record::grant(GRANT_ID, RawValue::from_string(grant_json()).unwrap()).to_line(),
        Record::directory("Patient", "p1", "patient/p1").to_line(),
        version_line(1, false),
        version_line(2, true),
        Record::End.to_line(),
    ];
    for line in &lines {
        assert!(!line.contains('\n'), "{line}");
        let parsed = Record::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(&parsed.to_line(), line);
    }
    let page = parse_page(&(lines.join("\n") + "\n")).unwrap();
    assert_eq!(page.header.backup_id, "b-1");
    assert_eq!(page.records.len(), lines.len() - 2);
    assert!(page.end);
}

#[test]
fn kv_values_are_carried_as_stored() {
    // Key order and spacing as stored, not as serde would write them again.
    let stored = r#"{"username":"ned","password_hash":"pbkdf2-sha256$1$c2FsdA$aGFzaA","display_name":"Ned","fhir_user":"Patient/p1"}"#;
    let Record::Kv(line) = Record::parse(&Record::kv("user:ned", stored).to_line()).unwrap() else { panic!() };
    assert_eq!((line.kind.as_str(), kv_value(&line)), ("user", stored.to_owned()));
    let Record::Kv(line) = Record::parse(&Record::kv("simulate:app", "plain\ntext").to_line()).unwrap() else { panic!() };
    assert_eq!((line.kind.as_str(), kv_value(&line)), ("kv", "plain\ntext".to_owned()));
    // A pretty-printed JSON value still makes one line.
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(stored).unwrap()).unwrap();
    assert!(!Record::kv("user:ned", &pretty).to_line().contains('\n'));
}

#[test]
fn kv_records_of_every_readable_version_are_accepted_and_newer_ones_refused() {
    // As this release stores them (with `record_version`), and as the release before did.
    let settings = crate::ports::encode_record(&ServerSettings::default()).unwrap();
    let client: Value = serde_json::from_str(&client_json()).unwrap();
    let user: Value = serde_json::from_str(&user_json()).unwrap();
    for (key, json) in [
        (SETTINGS_KEY.to_owned(), settings.clone()),
        ("client:app".to_owned(), crate::ports::encode_record(&client).unwrap()),
        ("user:ned".to_owned(), crate::ports::encode_record(&user).unwrap()),
        ("client:app".to_owned(), client_json()),
    ] {
        Record::parse(&Record::kv(&key, &json).to_line()).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    let newer = settings.replace("\"record_version\":1", "\"record_version\":2");
    assert!(refused(&Record::kv(SETTINGS_KEY, &newer).to_line()).contains("newer release"));
}

fn refused(line: &str) -> String {
    Record::parse(line).expect_err(line)
}

#[test]
fn bad_lines_are_refused_with_a_reason() {
    assert!(refused("not json").contains("kind"));
    assert!(refused(r#"{"kind":"tape"}"#).contains("unknown kind \"tape\""));
    assert!(refused(r#"{"kind":"end","extra":1}"#).contains("unknown field"));
    let header =
        |format: &str, version: u32, id: &str| json!({"kind": "header", "format": format, "version": version, "backup_id": id, "created_at": 0}).to_string();
    assert!(refused(&header("other", 1, "b")).contains("not a smart-edge backup"));
    assert!(refused(&header(FORMAT, 2, "b")).contains("version 2 is not supported"));
    assert!(refused(&header(FORMAT, 1, "a b")).contains("backup_id"));
    let client = Record::kv("client:app", &client_json()).to_line().replace("client:app", "client:other");
    assert!(refused(&client).contains("client_id differs"));
    let user_as_client = Record::kv("user:ned", &user_json()).to_line().replace(r#""kind":"user""#, r#""kind":"client""#);
    assert!(refused(&user_as_client).contains("is not a client key"));
    assert!(refused(&Record::kv("user:ned", r#"{"username":"ned"}"#).to_line()).contains("not a valid user"));
    assert!(refused(&Record::kv("backup:x", "v").to_line()).contains("not restored"));
    assert!(refused(&Record::grant("abc", RawValue::from_string(grant_json()).unwrap()).to_line()).contains("64 hex"));
    assert!(refused(&Record::grant(GRANT_ID, RawValue::from_string("{\"state\":\"lost\"}".into()).unwrap()).to_line()).contains("grant record"));
    assert!(refused(&Record::key(RawValue::from_string(key_json().replace("\"kid\":\"k1\",", "")).unwrap()).to_line()).contains("no kid"));
    assert!(refused(&Record::account("", RawValue::from_string(account_json()).unwrap()).to_line()).contains("username is empty"));
    assert!(refused(&Record::directory("Patient", "p1", "elsewhere/p1").to_line()).contains("not a partition name"));
    assert!(refused(&version_line(0, false)).contains("at least 1"));
    assert!(refused(&version_line(1, false).replace(r#""version":1"#, r#""version":3"#)).contains("meta.versionId"));
    assert!(refused(&version_line(1, false).replace(r#""id":"p1","version"#, r#""id":"p2","version"#)).contains("not Patient/p2"));
    assert!(refused(&version_line(1, false).replace("patient/p1", "patient/a/b")).contains("not a partition name"));
    // Review finding: a version line names the partition the server would put it in.
    assert!(refused(&version_line(1, false).replace(r#""partition":"patient/p1""#, r#""partition":"patient/p2""#)).contains("belongs in partition patient/p1"));
    assert!(refused(&Record::kv("simulate:app", "x").to_line().replace("simulate:app", "client:app")).contains("is a client key"));
}

#[test]
fn a_page_names_its_first_bad_line() {
    let good = version_line(1, false);
    let body = [header(), good.clone(), "{\"kind\":\"resource-version\"}".into(), good.clone()].join("\n");
    assert_eq!(parse_page(&body).unwrap_err().line, 3);
    let no_header = [good.clone()].join("\n");
    assert_eq!(parse_page(&no_header).unwrap_err(), LineError { line: 1, message: "a restore page starts with the backup's header line".into() });
    let two_headers = [header(), header()].join("\n");
    assert!(parse_page(&two_headers).unwrap_err().to_string().starts_with("line 2: a second header"));
    let after_end = [header(), Record::End.to_line(), good].join("\n");
    assert_eq!(parse_page(&after_end).unwrap_err().line, 3);
    assert_eq!(parse_page("\n\n").unwrap_err().line, 1);
    // CRLF line ends and blank lines are fine.
    let crlf = [header(), version_line(1, false), String::new()].join("\r\n");
    let page = parse_page(&crlf).unwrap();
    assert_eq!((page.records.len(), page.end), (1, false));
}

#[test]
fn a_page_is_bounded() {
    let full = std::iter::once(header()).chain(std::iter::repeat_n(version_line(1, false), MAX_PAGE_LINES)).collect::<Vec<_>>();
    assert_eq!(parse_page(&full.join("\n")).unwrap().records.len(), MAX_PAGE_LINES);
    let over = [full.join("\n"), Record::End.to_line()].join("\n");
    let error = parse_page(&over).unwrap_err();
    assert_eq!(error.line, MAX_PAGE_LINES + 2);
    assert!(error.message.contains("at most 500 lines"));
}

#[test]
fn cursors_round_trip_and_refuse_anything_else() {
    for cursor in [
        Cursor::start(),
        Cursor::Kv { list: Some("abc".into()) },
        Cursor::Keys,
        Cursor::Accounts { list: None },
        Cursor::Directory { after: Some(("Patient".into(), "p1".into())) },
        Cursor::Versions { partition: "shared/Organization".into(), after: Some(("Organization".into(), "o1".into(), 3)) },
    ] {
        let text = cursor.encode();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
        assert_eq!(Cursor::decode(&text), Some(cursor));
    }
    assert_eq!(Cursor::decode("%%%"), None);
    assert_eq!(Cursor::decode(&B64URL.encode(b"{\"at\":\"elsewhere\"}")), None);
    assert_eq!(Cursor::decode(&B64URL.encode(br#"{"at":"versions","partition":"../x","after":null}"#)), None);
}

#[test]
fn the_gate_starts_only_on_an_empty_deployment_and_continues_only_the_same_backup() {
    let running = RestoreMarker { backup_id: "b-1".into(), started_at: 1, finished_at: None };
    let done = RestoreMarker { finished_at: Some(2), ..running.clone() };
    assert_eq!(gate(None, "b-1", true), Ok(Gate::Start));
    assert_eq!(gate(None, "b-1", false), Err(Refusal::NotEmpty));
    assert_eq!(gate(Some(&running), "b-1", false), Ok(Gate::Continue));
    assert_eq!(gate(Some(&running), "b-2", true), Err(Refusal::Other { backup_id: "b-1".into() }));
    assert_eq!(gate(Some(&done), "b-1", true), Err(Refusal::Finished { backup_id: "b-1".into() }));
    assert!(Refusal::NotEmpty.to_string().contains("not empty"));
}

#[test]
fn partition_names() {
    for ok in ["directory", "patient/616eaeb2-a67a", "shared/Organization"] {
        assert_eq!(check_partition(ok), Ok(()), "{ok}");
    }
    for bad in ["", "patient/", "patient/a/b", "shared/Org-x", "directory/x", "other"] {
        assert!(check_partition(bad).is_err(), "{bad}");
    }
}
