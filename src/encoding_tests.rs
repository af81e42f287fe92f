use super::*;

fn accept(values: &[&'static str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
    }
    h
}

/// Each case was checked against Prometheus 2.42.
#[test]
fn negotiation_follows_prometheus() {
    let cases = [
        ("gzip", Some(Coding::Gzip)),
        ("deflate", Some(Coding::Deflate)),
        ("deflate, gzip", Some(Coding::Deflate)),
        ("gzip, deflate", Some(Coding::Gzip)),
        ("gzip,deflate", Some(Coding::Gzip)),
        (" gzip ", Some(Coding::Gzip)),
        ("br, gzip", Some(Coding::Gzip)),
        ("gzip;q=0, deflate", Some(Coding::Deflate)),
        ("deflate;q=0.5, gzip", Some(Coding::Gzip)),
        ("GZIP", None),
        ("Gzip", None),
        ("*", None),
        ("x-gzip", None),
        ("gzip;q=1", None),
        ("gzip;q=0", None),
        ("identity", None),
        ("br", None),
        ("", None),
    ];
    for (value, want) in cases {
        assert_eq!(negotiate(&accept(&[value])), want, "{value:?}");
    }
    assert_eq!(
        negotiate(&accept(&["br", "gzip"])),
        None,
        "the first header only"
    );
    assert_eq!(negotiate(&HeaderMap::new()), None);
}

fn with_encoding(enc: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
    h
}

#[test]
fn both_codings_round_trip_within_the_limit() {
    let plain = Bytes::from_static(b"{\"status\":\"success\",\"data\":[]}");
    assert_eq!(
        decode(&HeaderMap::new(), plain.clone(), 100).expect("identity"),
        plain
    );
    for (coding, name) in [(Coding::Gzip, "gzip"), (Coding::Deflate, "deflate")] {
        let packed = Bytes::from(coding.compress(&plain).expect("compress"));
        assert_eq!(coding.header_value(), name);
        assert_eq!(
            decode(&with_encoding(name), packed.clone(), 100).expect(name),
            plain
        );
        assert!(matches!(
            decode(&with_encoding(name), packed, 10),
            Err(Error::ResponseTooLarge { limit: 10 })
        ));
    }
    assert!(matches!(
        decode(&with_encoding("br"), plain.clone(), 100),
        Err(Error::BadResponse(_))
    ));
    assert!(matches!(
        decode(&with_encoding("gzip"), plain, 100),
        Err(Error::BadResponse(_))
    ));
}

#[test]
fn bombs_are_cut_off() {
    let bomb = Bytes::from(
        Coding::Gzip
            .compress(&vec![b'0'; 10_000_000])
            .expect("gzip"),
    );
    assert!(bomb.len() < 100_000);
    let err = decode(&with_encoding("gzip"), bomb.clone(), 1_000_000).expect_err("too large");
    assert!(err.to_string().contains("max_response_bytes"), "{err}");
    let prefix = decoded_prefix(&with_encoding("gzip"), &bomb, 64);
    assert_eq!(&prefix[..], &[b'0'; 64][..]);
}

#[test]
fn decoded_prefix_reads_what_it_can() {
    let body = br#"{"status":"error","errorType":"timeout","error":"x"}"#;
    let packed = Coding::Deflate.compress(body).expect("deflate");
    assert_eq!(
        &decoded_prefix(&with_encoding("deflate"), &packed, 1024)[..],
        body
    );
    assert_eq!(
        &decoded_prefix(&HeaderMap::new(), body, 4)[..],
        body,
        "identity as is"
    );
    assert_eq!(
        &decoded_prefix(&with_encoding("gzip"), body, 1024)[..],
        body,
        "not gzip after all: as it came"
    );
}
