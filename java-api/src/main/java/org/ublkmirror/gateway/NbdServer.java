package org.ublkmirror.gateway;

import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Store;
import org.ublkmirror.sys.LibC;
import org.ublkmirror.sys.Splice;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.Closeable;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * An NBD server (the gateway's side of the secondary): serves named {@link Export}s over TCP.
 *
 * <p>Protocol subset: fixed newstyle negotiation (NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES);
 * options GO, INFO, EXPORT_NAME, LIST, ABORT (STRUCTURED_REPLY, STARTTLS and everything else get
 * NBD_REP_ERR_UNSUP); info EXPORT and BLOCK_SIZE; commands READ, WRITE (FUA), FLUSH, TRIM,
 * WRITE_ZEROES (FUA, NO_HOLE), DISC; simple replies only.
 *
 * <p>Concurrency: each connection has one reader thread that decodes requests (and write payloads)
 * and hands them to a small pool of workers; replies may go out of order and are written whole
 * under the connection's output lock. At most {@link #MAX_IN_FLIGHT} requests per connection are
 * queued: the reader stops reading while the pool is busy, which pushes back on the client.
 *
 * <p>One writer per export: a second client entering transmission on an export that another
 * client holds is refused at NBD_OPT_GO with NBD_REP_ERR_POLICY (NBD_OPT_EXPORT_NAME cannot carry
 * an error: the connection is closed) unless the export is {@link Export#sharedWrite()}.
 */
public final class NbdServer implements Closeable {
    /** Requests queued or running per connection. */
    static final int MAX_IN_FLIGHT = 32;
    /** Worker threads per connection. */
    static final int WORKERS = 4;
    private static final int MAX_OPTION_LENGTH = 64 << 10;
    /** How long {@link #close()} waits for requests in flight. */
    static final long DRAIN_MILLIS = 5000;
    /**
     * Plain TCP connections read write payloads straight from the socket into pooled direct
     * buffers ({@link WireIn}), which the store writes from without a copy, and send READ replies
     * from them; false: reads and replies through the socket's streams, as TLS connections do
     * (-Dublkmirror.nbd.channels=false, to compare).
     */
    static final boolean CHANNELS = !"false".equals(System.getProperty("ublkmirror.nbd.channels"));
    /**
     * Plain TCP connections to a file export splice large non-FUA WRITE payloads from the socket
     * into the file ({@link SocketPayload}: one copy of each byte instead of two); false: every
     * payload is read into a pooled buffer first (-Dublkmirror.nbd.zerocopy=false, to compare).
     */
    static final boolean ZERO_COPY = !"false".equals(System.getProperty("ublkmirror.nbd.zerocopy"));
    /**
     * Spliced payloads are written by the connection's reader itself, in arrival order: only
     * writes at least this large, where the copy saved outweighs the workers' concurrency. Smaller
     * ones, and FUA writes (a sync each, which the workers overlap), go to the workers.
     */
    static final int SPLICE_MIN = 128 << 10;
    /** Payload buffers, all connections together: at most 2 x {@link #MAX_IN_FLIGHT} MiB kept. */
    private final PayloadPool payloads = new PayloadPool(2 * MAX_IN_FLIGHT);

    private final ServerSocket listener;
    private final Map<String, Export> exports;
    private final Map<String, Conn> holders = new ConcurrentHashMap<>();
    private final Set<Conn> conns = ConcurrentHashMap.newKeySet();
    private final Thread acceptor;
    private final AtomicInteger connIds = new AtomicInteger();
    private volatile boolean closed;
    private volatile Consumer<String> log = s -> { };
    /** WRITEs whose payload was spliced into the export's file (tests: the path is taken). */
    private final java.util.concurrent.atomic.AtomicLong splicedWrites = new java.util.concurrent.atomic.AtomicLong();

    private final SSLContext tls;

    private NbdServer(ServerSocket listener, Map<String, Export> exports, SSLContext tls) {
        this.listener = listener;
        this.exports = exports;
        this.tls = tls;
        this.acceptor = new Thread(this::acceptLoop, "nbd-accept-" + listener.getLocalPort());
        this.acceptor.setDaemon(true);
    }

    /** Listens on 127.0.0.1 at {@code port} (0: any free port). */
    public static NbdServer start(int port, Map<String, Export> exports) throws IOException {
        return start(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), exports);
    }

    /** Listens on {@code address} and serves {@code exports} (name to export) until {@link #close()}. */
    public static NbdServer start(InetSocketAddress address, Map<String, Export> exports) throws IOException {
        return start(address, exports, null);
    }

    /**
     * As {@link #start(InetSocketAddress, Map)}; with {@code tls} non-null the server insists on TLS
     * (the spec's FORCEDTLS mode): every option but NBD_OPT_STARTTLS and NBD_OPT_ABORT is answered
     * NBD_REP_ERR_TLS_REQD until the client upgrades, and the client must present a certificate
     * that {@code tls}'s trust managers accept (see {@link Tls}).
     */
    public static NbdServer start(InetSocketAddress address, Map<String, Export> exports, SSLContext tls) throws IOException {
        if (exports.isEmpty()) {
            throw new IllegalArgumentException("an NBD server needs at least one export");
        }
        for (String name : exports.keySet()) {
            if (name.getBytes(StandardCharsets.UTF_8).length > 4096 || name.indexOf('\0') >= 0) {
                throw new IllegalArgumentException("bad export name '" + name + "': at most 4096 bytes, no NUL");
            }
        }
        // a channel's socket: accepted connections have channels, for WireIn
        ServerSocket ss = ServerSocketChannel.open().socket();
        try {
            ss.setReuseAddress(true);
            ss.bind(address, 64);
        } catch (IOException e) {
            ss.close();
            String why = e.getMessage() != null && e.getMessage().toLowerCase().contains("in use") ? "address already in use" : e.getMessage();
            java.net.BindException be = new java.net.BindException("cannot listen on " + address.getHostString() + ":" + address.getPort() + ": " + why);
            be.initCause(e);
            throw be;
        }
        NbdServer s = new NbdServer(ss, new LinkedHashMap<>(exports), tls);
        s.acceptor.start();
        return s;
    }

    /** Where log lines (connections, refusals, errors) go; silent by default. */
    public NbdServer logTo(Consumer<String> sink) {
        this.log = sink == null ? s -> { } : sink;
        return this;
    }

    public InetSocketAddress address() {
        return (InetSocketAddress) listener.getLocalSocketAddress();
    }

    /** WRITEs so far whose payload went from the socket into the export's file by splice. */
    long splicedWrites() {
        return splicedWrites.get();
    }

    public int port() {
        return listener.getLocalPort();
    }

    /** Connections currently open (handshake or transmission). */
    public int connections() {
        return conns.size();
    }

    private void acceptLoop() {
        while (!closed) {
            Socket s;
            try {
                s = listener.accept();
            } catch (IOException e) {
                if (!closed) log.accept("accept failed: " + e.getMessage());
                return;
            }
            Conn c = new Conn(s, connIds.incrementAndGet());
            conns.add(c);
            if (closed) {
                c.kill();
                return;
            }
            Thread t = new Thread(c::run, "nbd-conn-" + c.id);
            t.setDaemon(true);
            c.thread = t;
            t.start();
        }
    }

    /**
     * Stops listening, stops reading new requests, lets the requests already received finish and
     * their replies go out (at most {@link #DRAIN_MILLIS}), then closes every connection. The
     * stores stay open (the caller owns them) and see no request after this returns.
     */
    @Override
    public void close() {
        stopAccepting();
        for (Conn c : conns) {
            c.stopReading();
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(DRAIN_MILLIS);
        for (Conn c : conns) {
            c.awaitEnd(deadline);
        }
        abort();
    }

    /** Drops every connection at once (a hard disconnect, as a killed gateway would). */
    public void abort() {
        stopAccepting();
        for (Conn c : conns) {
            c.kill();
        }
    }

    private void stopAccepting() {
        closed = true;
        try {
            listener.close();
        } catch (IOException ignored) {
        }
        try {
            if (Thread.currentThread() != acceptor) acceptor.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** A request the client sent that breaks the protocol: the connection is dropped. */
    private static final class ProtocolException extends IOException {
        ProtocolException(String m) {
            super(m);
        }
    }

    private final class Conn {
        final Socket sock;
        volatile Socket tlsSock;
        final int id;
        final String peer;
        DataInputStream in;
        DataOutputStream out;
        final Object outLock = new Object();
        boolean noZeroes;
        String exportName;
        Export export;
        Store store;
        long size;
        ExecutorService pool;
        final Semaphore slots = new Semaphore(MAX_IN_FLIGHT);
        volatile boolean dead;
        volatile Thread thread;
        /** Plain TCP after the handshake ({@link #CHANNELS}): replies with data go out on it, from pooled direct buffers. */
        SocketChannel wireCh;
        /** The reply header for {@link #wireCh} (under {@link #outLock}). */
        final ByteBuffer replyHeader = ByteBuffer.allocateDirect(16);
        /**
         * For spliced payloads ({@link #ZERO_COPY}; the reader's own): a descriptor of our own for
         * the socket (a dup, so a close elsewhere can never leave the reader splicing from a reused
         * number; {@link #kill} shuts the socket down to wake it), or -1.
         */
        volatile int spliceFd = -1;
        Splice splice;

        /** The reader sees end of input: no new request is taken, those received still complete. */
        void stopReading() {
            try {
                sock.shutdownInput();
            } catch (IOException ignored) {
                kill();
            }
        }

        void awaitEnd(long deadlineNanos) {
            Thread t = thread;
            if (t == null) return;
            long left = TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime());
            try {
                if (left > 0) t.join(left);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }

        Conn(Socket sock, int id) {
            this.sock = sock;
            this.id = id;
            this.peer = sock.getRemoteSocketAddress().toString();
        }

        void kill() {
            dead = true;
            if (spliceFd >= 0) {
                // the reader may sit in splice on its own descriptor: a shutdown wakes it, a close would not
                try {
                    sock.shutdownInput();
                } catch (IOException ignored) {
                }
                try {
                    sock.shutdownOutput();
                } catch (IOException ignored) {
                }
            }
            try {
                // the TCP socket, not the SSLSocket over it: no close_notify to a peer that may not read
                sock.close();
            } catch (IOException ignored) {
            }
        }

        void run() {
            try {
                sock.setTcpNoDelay(true);
                Keepalive.enable(sock);
                in = new DataInputStream(new BufferedInputStream(sock.getInputStream(), 1 << 16));
                out = new DataOutputStream(new BufferedOutputStream(sock.getOutputStream(), 1 << 16));
                if (handshake()) {
                    log.accept(peer + ": serving export '" + exportName + "'");
                    transmission();
                }
            } catch (EOFException | SocketException e) {
                // the client went away
            } catch (IOException e) {
                if (!dead && !closed) log.accept(peer + ": " + e.getMessage());
            } catch (RuntimeException e) {
                log.accept(peer + ": internal error: " + e);
            } finally {
                if (pool != null) {
                    // Requests already taken must finish before the export is released: a new
                    // client must never race a stale write of this one. Workers are never
                    // interrupted (an interrupt closes a FileChannel under every other user).
                    pool.shutdown();
                    long warnAt = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                    try {
                        while (!pool.awaitTermination(200, TimeUnit.MILLISECONDS)) {
                            if (closed && dead) break; // the server is going away (close() gave up waiting)
                            if (System.nanoTime() > warnAt) {
                                log.accept(peer + ": requests still running on the store after 30 s; export '" + exportName + "' stays held until they end");
                                warnAt = Long.MAX_VALUE;
                            }
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                if (exportName != null) {
                    holders.remove(exportName, this);
                    if (export != null) log.accept(peer + ": left export '" + exportName + "'");
                }
                kill();
                conns.remove(this);
            }
        }

        // ---------------------------------------------------------------- handshake

        /** Returns true when the client entered transmission with an export chosen. */
        boolean handshake() throws IOException {
            out.writeLong(Nbd.NBDMAGIC);
            out.writeLong(Nbd.IHAVEOPT);
            out.writeShort(Nbd.FLAG_FIXED_NEWSTYLE | Nbd.FLAG_NO_ZEROES);
            out.flush();
            int cflags = in.readInt();
            if ((cflags & Nbd.FLAG_C_FIXED_NEWSTYLE) == 0) {
                throw new ProtocolException("client does not speak fixed newstyle negotiation");
            }
            if ((cflags & ~(Nbd.FLAG_C_FIXED_NEWSTYLE | Nbd.FLAG_C_NO_ZEROES)) != 0) {
                throw new ProtocolException("client sent unknown handshake flags 0x" + Integer.toHexString(cflags));
            }
            noZeroes = (cflags & Nbd.FLAG_C_NO_ZEROES) != 0;
            while (true) {
                long magic = in.readLong();
                if (magic != Nbd.IHAVEOPT) {
                    throw new ProtocolException("bad option magic 0x" + Long.toHexString(magic));
                }
                int opt = in.readInt();
                int len = in.readInt();
                if (len < 0 || len > MAX_OPTION_LENGTH) {
                    throw new ProtocolException("option " + opt + " of " + Integer.toUnsignedString(len) + " bytes is too long");
                }
                byte[] data = new byte[len];
                in.readFully(data);
                if (tls != null && tlsSock == null && opt != Nbd.OPT_STARTTLS && opt != Nbd.OPT_ABORT) {
                    if (opt == Nbd.OPT_EXPORT_NAME) {
                        throw new ProtocolException("refused NBD_OPT_EXPORT_NAME without TLS");
                    }
                    error(opt, Nbd.REP_ERR_TLS_REQD, "this gateway requires TLS: send NBD_OPT_STARTTLS first (nbds://)");
                    continue;
                }
                switch (opt) {
                    case Nbd.OPT_EXPORT_NAME -> {
                        String name = new String(data, StandardCharsets.UTF_8);
                        String why = choose(name);
                        if (why != null) {
                            // NBD_OPT_EXPORT_NAME has no error reply: all we can do is hang up
                            throw new ProtocolException("refused export '" + name + "': " + why);
                        }
                        out.writeLong(size);
                        out.writeShort(transmissionFlags());
                        if (!noZeroes) out.write(new byte[124]);
                        out.flush();
                        return true;
                    }
                    case Nbd.OPT_ABORT -> {
                        reply(opt, Nbd.REP_ACK, new byte[0]);
                        return false;
                    }
                    case Nbd.OPT_LIST -> {
                        if (len != 0) {
                            error(opt, Nbd.REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
                            continue;
                        }
                        for (String name : exports.keySet()) {
                            byte[] n = name.getBytes(StandardCharsets.UTF_8);
                            ByteBuffer b = ByteBuffer.allocate(4 + n.length).putInt(n.length).put(n);
                            reply(opt, Nbd.REP_SERVER, b.array());
                        }
                        reply(opt, Nbd.REP_ACK, new byte[0]);
                    }
                    case Nbd.OPT_INFO, Nbd.OPT_GO -> {
                        if (infoOrGo(opt, data)) return true;
                    }
                    case Nbd.OPT_STRUCTURED_REPLY -> error(opt, Nbd.REP_ERR_UNSUP, "structured replies are not supported; use simple replies");
                    case Nbd.OPT_STARTTLS -> {
                        if (tls == null) {
                            error(opt, Nbd.REP_ERR_UNSUP, "TLS is not configured on this server");
                        } else if (tlsSock != null || len != 0) {
                            error(opt, Nbd.REP_ERR_INVALID, tlsSock != null ? "TLS is already active" : "NBD_OPT_STARTTLS takes no data");
                        } else {
                            reply(opt, Nbd.REP_ACK, new byte[0]);
                            startTls();
                        }
                    }
                    default -> error(opt, Nbd.REP_ERR_UNSUP, "option " + opt + " is not supported");
                }
            }
        }

        void startTls() throws IOException {
            SSLSocket t = (SSLSocket) tls.getSocketFactory().createSocket(sock, sock.getInetAddress().getHostAddress(), sock.getPort(), true);
            t.setUseClientMode(false);
            t.setNeedClientAuth(true);
            t.setEnabledProtocols(Tls.PROTOCOLS);
            tlsSock = t;
            sock.setSoTimeout(30_000); // a client that never finishes the handshake
            try {
                t.startHandshake();
            } catch (IOException e) {
                throw new IOException("TLS handshake failed (client certificate missing or not trusted?): " + e.getMessage(), e);
            }
            sock.setSoTimeout(0);
            in = new DataInputStream(new BufferedInputStream(t.getInputStream(), 1 << 16));
            out = new DataOutputStream(new BufferedOutputStream(t.getOutputStream(), 1 << 16));
            String who;
            try {
                who = t.getSession().getPeerPrincipal().getName();
            } catch (IOException e) {
                who = "?";
            }
            log.accept(peer + ": TLS established, client certificate " + who);
        }

        boolean infoOrGo(int opt, byte[] data) throws IOException {
            ByteBuffer b = ByteBuffer.wrap(data);
            if (b.remaining() < 4) {
                error(opt, Nbd.REP_ERR_INVALID, "option data too short");
                return false;
            }
            int nlen = b.getInt();
            if (nlen < 0 || nlen > b.remaining() - 2) {
                error(opt, Nbd.REP_ERR_INVALID, "export name length " + nlen + " does not fit the option");
                return false;
            }
            byte[] nb = new byte[nlen];
            b.get(nb);
            String name = new String(nb, StandardCharsets.UTF_8);
            int nreq = b.getShort() & 0xffff;
            if (b.remaining() != 2 * nreq) {
                error(opt, Nbd.REP_ERR_INVALID, "information request count " + nreq + " does not match the option length");
                return false;
            }
            Export e = exports.get(name);
            if (e == null) {
                error(opt, Nbd.REP_ERR_UNKNOWN, "no export named '" + name + "' (this server has: " + String.join(", ", exports.keySet()) + ")");
                return false;
            }
            long sz = e.store().size();
            // NBD_INFO_EXPORT: always
            ByteBuffer info = ByteBuffer.allocate(12).putShort((short) Nbd.INFO_EXPORT).putLong(sz).putShort((short) flagsOf(e));
            if (opt == Nbd.OPT_GO) {
                String why = choose(name);
                if (why != null) {
                    error(opt, Nbd.REP_ERR_POLICY, why);
                    return false;
                }
            }
            reply(opt, Nbd.REP_INFO, info.array());
            // NBD_INFO_BLOCK_SIZE: any alignment works; 4 KiB is what the legs are made of
            ByteBuffer bs = ByteBuffer.allocate(14).putShort((short) Nbd.INFO_BLOCK_SIZE).putInt(1).putInt(4096).putInt(Nbd.MAX_PAYLOAD);
            reply(opt, Nbd.REP_INFO, bs.array());
            for (int i = 0; i < nreq; i++) {
                int type = b.getShort() & 0xffff;
                if (type == Nbd.INFO_NAME) {
                    byte[] n = name.getBytes(StandardCharsets.UTF_8);
                    reply(opt, Nbd.REP_INFO, ByteBuffer.allocate(2 + n.length).putShort((short) Nbd.INFO_NAME).put(n).array());
                }
            }
            reply(opt, Nbd.REP_ACK, new byte[0]);
            return opt == Nbd.OPT_GO;
        }

        /** Takes the export for transmission; returns why not, or null. */
        String choose(String name) throws IOException {
            Export e = exports.get(name);
            if (e == null) return "no export named '" + name + "'";
            if (!e.sharedWrite() && !e.readOnly()) {
                Conn prev = holders.putIfAbsent(name, this);
                if (prev != null && prev != this) {
                    return "export '" + name + "' is already in use by another client (" + prev.peer
                            + "); only one writer at a time unless the gateway serves it with --shared-write";
                }
            }
            exportName = name;
            export = e;
            store = e.store();
            size = store.size();
            return null;
        }

        int flagsOf(Export e) {
            int f = Nbd.TF_HAS_FLAGS | Nbd.TF_SEND_FLUSH | Nbd.TF_SEND_FUA;
            if (e.readOnly()) {
                f |= Nbd.TF_READ_ONLY;
            } else {
                f |= Nbd.TF_SEND_TRIM | Nbd.TF_SEND_WRITE_ZEROES;
            }
            // a FLUSH on one connection flushes the whole store, so several connections are safe
            if (e.sharedWrite() || e.readOnly()) f |= Nbd.TF_CAN_MULTI_CONN;
            return f;
        }

        int transmissionFlags() {
            return flagsOf(export);
        }

        void reply(int opt, int type, byte[] data) throws IOException {
            out.writeLong(Nbd.OPT_REPLY_MAGIC);
            out.writeInt(opt);
            out.writeInt(type);
            out.writeInt(data.length);
            out.write(data);
            out.flush();
        }

        void error(int opt, int type, String message) throws IOException {
            if (type != Nbd.REP_ERR_UNSUP) log.accept(peer + ": " + Nbd.replyName(type) + ": " + message);
            reply(opt, type, message.getBytes(StandardCharsets.UTF_8));
        }

        // ---------------------------------------------------------------- transmission

        void transmission() throws IOException {
            SocketChannel ch = sock.getChannel();
            boolean plain = CHANNELS && tlsSock == null && ch != null;
            // plain TCP: buffered reads from the channel, payloads straight into direct buffers;
            // TLS (and -Dublkmirror.nbd.channels=false): the same reads, from the stream
            WireIn wire = plain ? new WireIn(ch, in.readNBytes(in.available())) : new WireIn(Channels.newChannel(in), new byte[0]);
            if (plain) wireCh = ch;
            if (plain && ZERO_COPY && store instanceof FileStore) {
                int fd = Splice.descriptorOf(ch);
                int own = fd >= 0 ? Splice.dup(fd) : -1;
                Splice sp = own >= 0 ? Splice.open() : null;
                if (sp != null) {
                    splice = sp;
                    spliceFd = own;
                } else if (own >= 0) {
                    LibC.get().close(own);
                }
            }
            try {
                serveRequests(wire);
            } finally {
                if (splice != null) {
                    splice.close();
                    int own = spliceFd;
                    spliceFd = -1;
                    LibC.get().close(own);
                }
            }
        }

        private void serveRequests(WireIn wire) throws IOException {
            pool = Executors.newFixedThreadPool(WORKERS, r -> {
                Thread t = new Thread(r, "nbd-conn-" + id + "-worker");
                t.setDaemon(true);
                return t;
            });
            while (true) {
                int magic = wire.readInt();
                if (magic != Nbd.REQUEST_MAGIC) {
                    throw new ProtocolException("bad request magic 0x" + Integer.toHexString(magic));
                }
                int flags = wire.readUnsignedShort();
                int type = wire.readUnsignedShort();
                long handle = wire.readLong();
                long offset = wire.readLong();
                long length = wire.readInt() & 0xffffffffL;
                ByteBuffer payload = null;
                if (type == Nbd.CMD_WRITE) {
                    if (length > Nbd.MAX_PAYLOAD) {
                        throw new ProtocolException("WRITE of " + length + " bytes exceeds the advertised maximum of " + Nbd.MAX_PAYLOAD);
                    }
                    if (splice != null && length >= SPLICE_MIN && (flags & Nbd.CMD_FLAG_FUA) == 0) {
                        writeSpliced(wire, handle, offset, (int) length);
                        continue;
                    }
                    payload = payloads.take((int) length);
                    try {
                        wire.readFully(payload);
                    } catch (IOException | RuntimeException e) {
                        payloads.give(payload);
                        throw e;
                    }
                    payload.flip();
                }
                if (type == Nbd.CMD_DISC) {
                    return; // finally: wait for in-flight requests, then close
                }
                try {
                    slots.acquire();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted");
                }
                ByteBuffer p = payload;
                try {
                    pool.execute(() -> {
                        try {
                            serve(flags, type, handle, offset, length, p);
                        } finally {
                            if (p != null) payloads.give(p);
                            slots.release();
                        }
                    });
                } catch (RuntimeException e) {
                    if (p != null) payloads.give(p);
                    slots.release();
                    throw e;
                }
            }
        }

        /**
         * A WRITE whose payload is spliced from the socket into the export's file, on the reader
         * thread, answered before the next request is read. A file-side failure is an error reply
         * (the payload's rest is read off the wire first); a socket-side one ends the connection.
         */
        private void writeSpliced(WireIn wire, long handle, long offset, int length) throws IOException {
            SocketPayload p = new SocketPayload(wire, spliceFd, splice, payloads, length);
            int err = 0;
            try {
                if (export.readOnly()) err = Nbd.EPERM;
                else if (!(offset >= 0 && length <= size && offset <= size - length)) err = Nbd.ENOSPC;
                else {
                    store.write(offset, p, false);
                    if (p.spliced()) splicedWrites.incrementAndGet();
                }
            } catch (IOException e) {
                if (!p.socketFailed()) {
                    err = errnoOf(e);
                    log.accept(peer + ": WRITE of " + length + " bytes at " + offset + " failed: " + e.getMessage());
                }
            } catch (RuntimeException e) {
                err = Nbd.EINVAL;
                log.accept(peer + ": WRITE failed: " + e);
            }
            p.finish(); // a socket failure is thrown here: the connection ends
            synchronized (outLock) {
                out.writeInt(Nbd.SIMPLE_REPLY_MAGIC);
                out.writeInt(err);
                out.writeLong(handle);
                out.flush();
            }
        }

        static int errnoOf(IOException e) {
            String m = String.valueOf(e.getMessage()).toLowerCase();
            return m.contains("no space") || m.contains("quota") || m.contains("too large") ? Nbd.ENOSPC : Nbd.EIO;
        }

        void serve(int flags, int type, long handle, long offset, long length, ByteBuffer payload) {
            int err = 0;
            byte[] data = null;
            ByteBuffer direct = null; // a READ's data in a pooled buffer (plain TCP)
            try {
                boolean inRange = offset >= 0 && length <= size && offset <= size - length;
                boolean fua = (flags & Nbd.CMD_FLAG_FUA) != 0;
                boolean isWrite = type == Nbd.CMD_WRITE || type == Nbd.CMD_TRIM || type == Nbd.CMD_WRITE_ZEROES;
                if (isWrite && export.readOnly()) {
                    err = Nbd.EPERM;
                } else {
                    switch (type) {
                        case Nbd.CMD_READ -> {
                            if (length > Nbd.MAX_PAYLOAD) err = Nbd.EINVAL;
                            else if (!inRange) err = Nbd.EINVAL;
                            else if (wireCh != null && length <= PayloadPool.SIZE) {
                                direct = payloads.take((int) length);
                                store.read(offset, direct);
                                direct.flip();
                            } else {
                                ByteBuffer bb = ByteBuffer.allocate((int) length);
                                store.read(offset, bb);
                                data = bb.array();
                            }
                        }
                        case Nbd.CMD_WRITE -> {
                            if (!inRange) err = Nbd.ENOSPC;
                            else store.write(offset, payload, fua);
                        }
                        case Nbd.CMD_FLUSH -> store.flush();
                        case Nbd.CMD_TRIM -> {
                            if (!inRange) err = Nbd.EINVAL;
                            else if (length > 0) {
                                store.discard(offset, length);
                                if (fua) store.flush();
                            }
                        }
                        case Nbd.CMD_WRITE_ZEROES -> {
                            if (!inRange) err = Nbd.ENOSPC;
                            else if (length > 0) {
                                if ((flags & Nbd.CMD_FLAG_NO_HOLE) != 0) writeZeroes(offset, length, fua);
                                else {
                                    store.discard(offset, length);
                                    if (fua) store.flush();
                                }
                            }
                        }
                        default -> err = Nbd.EINVAL;
                    }
                }
            } catch (IOException e) {
                err = errnoOf(e);
                log.accept(peer + ": " + Nbd.commandName(type) + " of " + length + " bytes at " + offset + " failed: " + e.getMessage());
            } catch (OutOfMemoryError e) {
                err = Nbd.ENOMEM;
            } catch (RuntimeException e) {
                err = Nbd.EINVAL;
                log.accept(peer + ": " + Nbd.commandName(type) + " failed: " + e);
            }
            try {
                synchronized (outLock) {
                    if (direct != null && err == 0) {
                        // out is always flushed here: the header and the data in one gathering write
                        replyHeader.clear().putInt(Nbd.SIMPLE_REPLY_MAGIC).putInt(err).putLong(handle).flip();
                        ByteBuffer[] v = {replyHeader, direct};
                        while (v[0].hasRemaining() || v[1].hasRemaining()) wireCh.write(v);
                    } else {
                        out.writeInt(Nbd.SIMPLE_REPLY_MAGIC);
                        out.writeInt(err);
                        out.writeLong(handle);
                        if (err == 0 && data != null) out.write(data);
                        out.flush();
                    }
                }
            } catch (IOException e) {
                kill(); // the reader notices and tears the connection down
            } finally {
                if (direct != null) payloads.give(direct);
            }
        }

        void writeZeroes(long offset, long length, boolean fua) throws IOException {
            ByteBuffer z = ByteBuffer.allocate((int) Math.min(length, 1 << 20));
            while (length > 0) {
                int n = (int) Math.min(length, z.capacity());
                z.clear().limit(n);
                store.write(offset, z, fua);
                offset += n;
                length -= n;
            }
        }
    }
}
