package org.ublkmirror.logship;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.Closeable;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * The log receiver: the second location of the tracking log, on another host. It serves
 * {@link ShipProtocol} on a TCP port (with TLS and client certificates when given an
 * SSLContext) and keeps what it receives in a {@link ReceiverStore}. One thread per connection;
 * a connection idle for {@link #IDLE_MILLIS} is closed (clients reconnect).
 */
public final class LogReceiver implements Closeable {
    public static final int DEFAULT_PORT = 10810;
    static final int IDLE_MILLIS = 120_000;

    private final ServerSocket listener;
    private final ReceiverStore store;
    private final SSLContext tls;
    private final Set<Socket> conns = ConcurrentHashMap.newKeySet();
    private final Thread acceptor;
    private volatile Consumer<String> log = s -> { };
    private volatile boolean closed;

    private LogReceiver(ServerSocket listener, ReceiverStore store, SSLContext tls) {
        this.listener = listener;
        this.store = store;
        this.tls = tls;
        this.acceptor = new Thread(this::acceptLoop, "log-receiver-accept");
        this.acceptor.setDaemon(true);
    }

    /** Listens on {@code address} (port 0: any free port) and serves {@code store}; {@code tls} null: plain TCP. */
    public static LogReceiver start(InetSocketAddress address, ReceiverStore store, SSLContext tls) throws IOException {
        ServerSocket ss = new ServerSocket();
        ss.setReuseAddress(true);
        try {
            ss.bind(address);
        } catch (IOException e) {
            ss.close();
            throw new java.net.BindException("cannot listen on " + address + ": " + e.getMessage());
        }
        LogReceiver r = new LogReceiver(ss, store, tls);
        r.acceptor.start();
        return r;
    }

    public int port() {
        return listener.getLocalPort();
    }

    public ReceiverStore store() {
        return store;
    }

    /** Where connection and refusal messages go (default: nowhere). */
    public void logTo(Consumer<String> sink) {
        this.log = sink;
    }

    private void acceptLoop() {
        while (!closed) {
            Socket s;
            try {
                s = listener.accept();
            } catch (IOException e) {
                if (closed) return;
                log.accept("accept failed: " + e.getMessage());
                continue;
            }
            conns.add(s);
            Thread t = new Thread(() -> serve(s), "log-receiver-" + s.getRemoteSocketAddress());
            t.setDaemon(true);
            t.start();
        }
    }

    private void serve(Socket raw) {
        String peer = String.valueOf(raw.getRemoteSocketAddress());
        try (raw) {
            raw.setTcpNoDelay(true);
            raw.setSoTimeout(IDLE_MILLIS);
            Socket s = raw;
            if (tls != null) {
                SSLSocket t = (SSLSocket) tls.getSocketFactory().createSocket(raw, raw.getInetAddress().getHostAddress(), raw.getPort(), true);
                t.setUseClientMode(false);
                t.setNeedClientAuth(true);
                t.setEnabledProtocols(org.ublkmirror.gateway.Tls.PROTOCOLS);
                raw.setSoTimeout(30_000); // a client that never finishes the handshake
                try {
                    t.startHandshake();
                } catch (IOException e) {
                    log.accept(peer + ": TLS handshake refused: " + e.getMessage());
                    return;
                }
                raw.setSoTimeout(IDLE_MILLIS);
                s = t;
            }
            DataInputStream in = new DataInputStream(new BufferedInputStream(s.getInputStream(), 1 << 16));
            OutputStream out = new BufferedOutputStream(s.getOutputStream(), 1 << 16);
            while (!closed) {
                ShipProtocol.Frame f;
                try {
                    f = ShipProtocol.read(in);
                } catch (ShipProtocol.BadFrameException e) {
                    log.accept(peer + ": " + e.getMessage() + "; connection closed");
                    ShipProtocol.write(out, ShipProtocol.ERROR, ShipProtocol.error(e.code, e.getMessage()));
                    return; // framing cannot be trusted any more
                }
                if (f == null) return;
                answer(peer, f, out);
            }
        } catch (SocketTimeoutException e) {
            // idle: the client reconnects when it needs to
        } catch (SocketException e) {
            if (!closed) log.accept(peer + ": connection lost: " + e.getMessage());
        } catch (IOException e) {
            if (!closed) log.accept(peer + ": " + e.getMessage());
        } finally {
            conns.remove(raw);
        }
    }

    private void answer(String peer, ShipProtocol.Frame f, OutputStream out) throws IOException {
        ByteBuffer p = ByteBuffer.wrap(f.payload());
        try {
            switch (f.type()) {
                case ShipProtocol.PUT -> {
                    String name = ShipProtocol.getName(p);
                    byte[] rec = ShipProtocol.rest(p);
                    ReceiverStore.Stored st = store.put(name, rec);
                    boolean written = st.written();
                    long seq = st.sequence();
                    ShipProtocol.write(out, ShipProtocol.STORED, ByteBuffer.allocate(9).putLong(seq).put((byte) (written ? 1 : 0)).array());
                    if (written) log.accept(peer + ": stored tracking log of '" + name + "' seq " + seq + " (" + rec.length + " bytes)");
                }
                case ShipProtocol.GET -> {
                    if (!p.hasRemaining()) throw new ShipProtocol.BadFrameException(ShipProtocol.E_BAD_REQUEST, "GET without a selector");
                    int kind = p.get();
                    ReceiverStore.Copy c;
                    String what;
                    if (kind == ShipProtocol.SEL_NAME) {
                        String name = ShipProtocol.getName(p);
                        what = "mirror '" + name + "'";
                        c = store.getByName(name);
                    } else if (kind == ShipProtocol.SEL_VOLUME && p.remaining() == 16) {
                        UUID v = new UUID(p.getLong(), p.getLong());
                        what = "volume " + v;
                        c = store.getByVolume(v);
                    } else {
                        throw new ShipProtocol.BadFrameException(ShipProtocol.E_BAD_REQUEST, "GET selector " + kind + " is invalid");
                    }
                    if (c == null) {
                        throw new ReceiverStore.Refused(ShipProtocol.E_NOT_FOUND, "this receiver holds no tracking log of " + what);
                    }
                    String name = c.entry().name();
                    ByteBuffer b = ByteBuffer.allocate(ShipProtocol.nameBytes(name) + 8 + c.record().length);
                    ShipProtocol.putName(b, name);
                    b.putLong(c.entry().receivedMillis()).put(c.record());
                    ShipProtocol.write(out, ShipProtocol.RECORD, b.array());
                }
                case ShipProtocol.LIST -> {
                    List<ReceiverStore.Entry> es = store.list();
                    int n = 4;
                    for (ReceiverStore.Entry e : es) n += 16 + 8 + 8 + 8 + 4 + ShipProtocol.nameBytes(e.name());
                    ByteBuffer b = ByteBuffer.allocate(n).putInt(es.size());
                    for (ReceiverStore.Entry e : es) {
                        b.putLong(e.volume().getMostSignificantBits()).putLong(e.volume().getLeastSignificantBits());
                        b.putLong(e.sequence()).putLong(e.receivedMillis()).putLong(e.dirtyBlocks()).putInt(e.recordLength());
                        ShipProtocol.putName(b, e.name());
                    }
                    ShipProtocol.write(out, ShipProtocol.LISTING, b.array());
                }
                default -> throw new ShipProtocol.BadFrameException(ShipProtocol.E_BAD_REQUEST, "request type " + f.type() + " is unknown");
            }
        } catch (ReceiverStore.Refused e) {
            log.accept(peer + ": refused: " + e.getMessage());
            ShipProtocol.write(out, ShipProtocol.ERROR, ShipProtocol.error(e.code, e.getMessage()));
        } catch (ShipProtocol.BadFrameException e) {
            log.accept(peer + ": refused: " + e.getMessage());
            ShipProtocol.write(out, ShipProtocol.ERROR, ShipProtocol.error(e.code, e.getMessage()));
        } catch (IOException e) {
            if (e instanceof SocketException) throw e;
            String msg = "receiver cannot store or read the log: " + e.getMessage();
            log.accept(peer + ": " + msg);
            ShipProtocol.write(out, ShipProtocol.ERROR, ShipProtocol.error(ShipProtocol.E_IO, msg));
        }
    }

    /** Stops listening and drops every connection. Stored logs stay on disk. */
    @Override
    public void close() {
        closed = true;
        try {
            listener.close();
        } catch (IOException ignored) {
        }
        for (Socket s : conns) {
            try {
                s.close(); // the TCP socket: no close_notify to a peer that may not read
            } catch (IOException ignored) {
            }
        }
        try {
            acceptor.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
