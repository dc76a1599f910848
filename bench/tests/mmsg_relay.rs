//! The recvmmsg/sendmmsg reference relay forwards what it receives to the leg's destination,
//! from the source address, with the payload unchanged (loopback only, one leg, seconds).
use std::{
    net::UdpSocket,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

#[test]
fn mmsg_relay_forwards_each_datagram_to_its_leg() {
    // Free ports picked by the kernel, then released for the relay to bind.
    let free = || {
        UdpSocket::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    };
    let (listen_port, sink) = (free(), UdpSocket::bind("127.0.0.1:0").expect("sink"));
    sink.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let legs = std::env::temp_dir().join(format!("mmsg-test-{}.legs", std::process::id()));
    std::fs::write(
        &legs,
        format!("{listen_port} {}\n", sink.local_addr().expect("addr")),
    )
    .expect("legs file");
    let mut child = Command::new(Path::new(env!("CARGO_BIN_EXE_relay-bench")))
        .args(["mmsg-relay", "--legs"])
        .arg(&legs)
        .args([
            "--listen",
            "127.0.0.1",
            "--source",
            "127.0.0.2",
            "--max-secs",
            "20",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().expect("stderr")),
        &mut line,
    )
    .expect("ready line");
    assert!(line.contains("ready, 1 legs"), "{line}");

    let src = UdpSocket::bind("127.0.0.1:0").expect("src");
    let mut buf = [0u8; 64];
    for i in 0..3u8 {
        src.send_to(&[i; 20], ("127.0.0.1", listen_port))
            .expect("send");
        let (n, from) = sink.recv_from(&mut buf).expect("relayed datagram");
        assert_eq!(&buf[..n], &[i; 20]);
        assert_eq!(from.to_string(), format!("127.0.0.2:{listen_port}"));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&legs);
}
