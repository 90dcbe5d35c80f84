package org.ublkmirror.logship;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.Closeable;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

/**
 * A client of a {@link LogReceiver}. Keeps one connection, opened on first use; a request that
 * fails on a connection that was already used once (the receiver closed it while idle) is sent
 * again on a new one. Errors: {@link Unreachable} (cannot connect, timed out, connection lost),
 * {@link ReceiverError} (the receiver answered with an ERROR frame). Not thread-safe: one
 * request at a time.
 */
public final class ReceiverClient implements Closeable {

    /** Where a receiver is and how to talk to it. */
    public record Options(Duration connectTimeout, Duration ioTimeout, SSLContext tls) {
        public static Options defaults() {
            return new Options(Duration.ofSeconds(5), Duration.ofSeconds(30), null);
        }

        public Options withTls(SSLContext ctx) {
            return new Options(connectTimeout, ioTimeout, ctx);
        }

        public Options withTimeouts(Duration connect, Duration io) {
            return new Options(connect, io, tls);
        }
    }

    /** The receiver could not be reached or the connection broke. */
    public static final class Unreachable extends IOException {
        public Unreachable(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The receiver refused the request. */
    public static final class ReceiverError extends IOException {
        public final int code;

        public ReceiverError(int code, String message) {
            super(message);
            this.code = code;
        }
    }

    /** A record as fetched, with the name it is held under and when the receiver got it. */
    public record Fetched(String name, long receivedMillis, byte[] record) {
    }

    private final String host;
    private final int port;
    private final Options options;
    private Socket raw;
    private DataInputStream in;
    private OutputStream out;
    private boolean used;

    public ReceiverClient(String host, int port, Options options) {
        this.host = host;
        this.port = port;
        this.options = options;
    }

    public String address() {
        return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
    }

    /** Parses HOST:PORT (IPv6 in brackets; port defaults to {@link LogReceiver#DEFAULT_PORT} if absent). */
    public static InetSocketAddress parse(String s) {
        String host = s;
        int port = LogReceiver.DEFAULT_PORT;
        int colon = s.lastIndexOf(':');
        boolean bracketed = s.startsWith("[");
        if (colon >= 0 && (!bracketed || colon > s.indexOf(']'))) {
            host = s.substring(0, colon);
            try {
                port = Integer.parseInt(s.substring(colon + 1));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(s + ": port '" + s.substring(colon + 1) + "' is not a number; give HOST:PORT");
            }
        }
        if (host.startsWith("[") && host.endsWith("]")) host = host.substring(1, host.length() - 1);
        if (host.isEmpty()) throw new IllegalArgumentException(s + ": no host; give HOST:PORT, e.g. 192.0.2.7:" + LogReceiver.DEFAULT_PORT);
        if (port <= 0 || port > 65535) throw new IllegalArgumentException(s + ": port " + port + " is out of range");
        return InetSocketAddress.createUnresolved(host, port);
    }

    private void connect() throws IOException {
        Socket s = new Socket();
        try {
            s.connect(new InetSocketAddress(host, port), (int) options.connectTimeout().toMillis());
            s.setTcpNoDelay(true);
            s.setSoTimeout((int) options.ioTimeout().toMillis());
            Socket io = s;
            if (options.tls() != null) {
                SSLSocket t = (SSLSocket) options.tls().getSocketFactory().createSocket(s, host, port, true);
                t.setUseClientMode(true);
                t.setEnabledProtocols(org.ublkmirror.gateway.Tls.PROTOCOLS);
                SSLParameters p = t.getSSLParameters();
                p.setEndpointIdentificationAlgorithm("HTTPS"); // the receiver's certificate must name the host dialled
                t.setSSLParameters(p);
                t.startHandshake();
                io = t;
            }
            raw = s;
            in = new DataInputStream(new BufferedInputStream(io.getInputStream(), 1 << 16));
            out = new BufferedOutputStream(io.getOutputStream(), 1 << 16);
            used = false;
        } catch (UnknownHostException e) {
            s.close();
            throw new Unreachable("cannot reach log receiver " + address() + ": unknown host", e);
        } catch (ConnectException | SocketTimeoutException e) {
            s.close();
            throw new Unreachable("cannot reach log receiver " + address() + ": " + e.getMessage()
                    + "; is 'mirrorctl log-receiver' running there, and the port open?", e);
        } catch (javax.net.ssl.SSLException e) {
            s.close();
            throw new Unreachable("TLS with log receiver " + address() + " failed: " + e.getMessage()
                    + " (check the key store, trust store and the receiver's certificate)", e);
        } catch (IOException e) {
            s.close();
            throw new Unreachable("cannot reach log receiver " + address() + ": " + e.getMessage(), e);
        }
    }

    private ShipProtocol.Frame call(int type, byte[] payload) throws IOException {
        for (int attempt = 0; ; attempt++) {
            boolean reused = raw != null && used;
            if (raw == null) connect();
            try {
                ShipProtocol.write(out, type, payload);
                ShipProtocol.Frame f = ShipProtocol.read(in);
                if (f == null) throw new java.io.EOFException("the receiver closed the connection");
                used = true;
                if (f.type() == ShipProtocol.ERROR) {
                    ByteBuffer b = ByteBuffer.wrap(f.payload());
                    int code = b.remaining() >= 2 ? b.getShort() & 0xffff : 0;
                    String msg = new String(ShipProtocol.rest(b), StandardCharsets.UTF_8);
                    if (code == ShipProtocol.E_BAD_FRAME) disconnect();
                    throw new ReceiverError(code, "log receiver " + address() + ": " + msg);
                }
                return f;
            } catch (ReceiverError e) {
                throw e;
            } catch (ShipProtocol.BadFrameException e) {
                disconnect();
                throw new Unreachable("log receiver " + address() + " sent a bad answer: " + e.getMessage(), e);
            } catch (IOException e) {
                disconnect();
                if (reused && attempt == 0) continue; // an idle connection the receiver had closed
                throw new Unreachable("connection to log receiver " + address() + " lost: " + e.getMessage(), e);
            }
        }
    }

    private static void expect(ShipProtocol.Frame f, int type) throws IOException {
        if (f.type() != type) throw new IOException("log receiver answered with frame type " + f.type() + ", expected " + type);
    }

    /** Sends mirror {@code name}'s record; returns the sequence the receiver holds now. */
    public long put(String name, byte[] record) throws IOException {
        ShipProtocol.Frame f = call(ShipProtocol.PUT, ShipProtocol.put(name, record));
        expect(f, ShipProtocol.STORED);
        return ByteBuffer.wrap(f.payload()).getLong();
    }

    /** The record held for mirror {@code name}, or null if the receiver holds none. */
    public Fetched getByName(String name) throws IOException {
        return get(ShipProtocol.getByName(name));
    }

    /** The record held for volume {@code volume}, or null if the receiver holds none. */
    public Fetched getByVolume(UUID volume) throws IOException {
        return get(ShipProtocol.getByVolume(volume));
    }

    private Fetched get(byte[] sel) throws IOException {
        ShipProtocol.Frame f;
        try {
            f = call(ShipProtocol.GET, sel);
        } catch (ReceiverError e) {
            if (e.code == ShipProtocol.E_NOT_FOUND) return null;
            throw e;
        }
        expect(f, ShipProtocol.RECORD);
        ByteBuffer b = ByteBuffer.wrap(f.payload());
        String name = ShipProtocol.getName(b);
        long received = b.getLong();
        return new Fetched(name, received, ShipProtocol.rest(b));
    }

    /** What the receiver holds. */
    public List<ReceiverStore.Entry> list() throws IOException {
        ShipProtocol.Frame f = call(ShipProtocol.LIST, new byte[0]);
        expect(f, ShipProtocol.LISTING);
        ByteBuffer b = ByteBuffer.wrap(f.payload());
        int n = b.getInt();
        List<ReceiverStore.Entry> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            UUID v = new UUID(b.getLong(), b.getLong());
            long seq = b.getLong(), rec = b.getLong(), dirty = b.getLong();
            int len = b.getInt();
            out.add(new ReceiverStore.Entry(ShipProtocol.getName(b), v, seq, rec, dirty, len));
        }
        return out;
    }

    private void disconnect() {
        Socket s = raw;
        raw = null;
        in = null;
        out = null;
        if (s != null) {
            try {
                s.close(); // the TCP socket, not an SSLSocket over it
            } catch (IOException ignored) {
            }
        }
    }

    @Override
    public void close() {
        disconnect();
    }
}
