package org.ublkmirror.gateway;

import java.io.IOException;
import java.net.Socket;

/**
 * TCP keepalive with short probes on both ends of an NBD connection, so that a peer that vanished
 * without a FIN or RST (a cut link, a dead host) is noticed in about {@link #IDLE_S} +
 * {@link #COUNT} x {@link #INTERVAL_S} seconds rather than the kernel's default two hours. On the
 * gateway this frees a single-writer export held by a dead client; on the client, an idle
 * connection breaks even when no request is pending.
 */
final class Keepalive {
    static final int IDLE_S = 10, INTERVAL_S = 5, COUNT = 3;

    private Keepalive() {
    }

    static void enable(Socket s) throws IOException {
        s.setKeepAlive(true);
        try {
            s.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPIDLE, IDLE_S);
            s.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPINTERVAL, INTERVAL_S);
            s.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPCOUNT, COUNT);
        } catch (UnsupportedOperationException e) {
            // not on this platform: the kernel's defaults apply
        }
    }
}
