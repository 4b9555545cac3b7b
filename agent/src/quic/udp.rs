//! UDP sockets for QUIC endpoints, with buffers sized for bursts.
//!
//! Every connection of an endpoint shares its one socket. With the kernel's
//! default receive buffer (208 KiB on common Linux systems) a brand serving
//! thousands of paid queries a second drops datagrams whenever its event loop
//! is late by a few milliseconds, and QUIC's loss recovery turns each drop
//! into tens of milliseconds of latency (BENCHMARKS.md, scale). The kernel
//! caps what is asked at `net.core.rmem_max` / `wmem_max`; the socket is
//! still usable then, and the cap is logged once per socket with the sysctl
//! that lifts it.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use super::TransportError;

/// Binds a non-blocking UDP socket on `addr` asking for `buffer` bytes of
/// receive and send buffer each (0: the kernel's defaults).
pub(crate) fn bind(addr: SocketAddr, buffer: usize) -> Result<UdpSocket, TransportError> {
    let bind_err = |source| TransportError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(bind_err)?;
    if buffer > 0 {
        // Refusals are not fatal: the defaults still work, only less well.
        let _ = socket.set_recv_buffer_size(buffer);
        let _ = socket.set_send_buffer_size(buffer);
        // Linux reports twice what was granted (it counts its bookkeeping).
        let reported_per_byte = if cfg!(target_os = "linux") { 2 } else { 1 };
        let got = socket.recv_buffer_size().unwrap_or(0) / reported_per_byte;
        if got < buffer {
            tracing::warn!(
                asked = buffer,
                granted = got,
                "the kernel capped this UDP socket's receive buffer; under load datagrams may be dropped \
                 (raise net.core.rmem_max and net.core.wmem_max)"
            );
        }
    }
    socket.bind(&addr.into()).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    Ok(socket.into())
}

/// A client endpoint (it dials out, accepts nothing) on `addr`.
pub fn client_endpoint(addr: SocketAddr, buffer: usize) -> Result<quinn::Endpoint, TransportError> {
    let socket = bind(addr, buffer)?;
    Ok(quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, std::sync::Arc::new(quinn::TokioRuntime))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_at_least_the_default_buffer_and_is_bound() {
        let plain = bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let default = Socket::from(plain.try_clone().unwrap()).recv_buffer_size().unwrap();
        let sized = bind("127.0.0.1:0".parse().unwrap(), 4 << 20).unwrap();
        let got = Socket::from(sized.try_clone().unwrap()).recv_buffer_size().unwrap();
        assert!(got >= default, "asking for more never gives less: {got} < {default}");
        assert_ne!(sized.local_addr().unwrap().port(), 0);
        // Datagrams pass.
        plain.send_to(b"ping", sized.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        for _ in 0..1000 {
            match sized.recv_from(&mut buf) {
                Ok((n, _)) => return assert_eq!(&buf[..n], b"ping"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(2))
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no datagram within 2 s");
    }
}
