package org.ublkmirror.gateway;

import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Store;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A {@link Store} on an NBD export: the secondary leg behind a gateway (ours, qemu-nbd, nbdkit...).
 *
 * <p>One TCP connection; many requests in flight on it (distinct 64-bit handles), sent under a
 * lock and answered by one reader thread that completes each request's future. Large reads and
 * writes are split at the server's maximum payload and pipelined.
 *
 * <p>Outage behaviour: the server silent for {@link Options#ioTimeout()} while requests are pending
 * (no reply of any kind, counted from the later of its last reply and the oldest pending request's
 * issue), one request unanswered for {@link #STUCK_FACTOR} times the I/O timeout while the server
 * answers others, a dropped connection, or a reply the client cannot parse breaks the connection:
 * that call and every call
 * pending or made later throw {@link IOException} at once (the forker turns this into degraded
 * mode). There is no reconnect here: the engine opens a new NbdStore when the secondary returns.
 */
public final class NbdStore implements Store {

    /**
     * A request still unanswered after this many I/O timeouts breaks the connection even while the
     * server answers others (DRBD's ko-count, default 7, bounds a stuck request the same way). The
     * I/O timeout itself is a progress timeout: requests queued behind others on a slow but live
     * link (a resync's window of 1 MiB copies on a rate-limited, lossy WAN) wait as long as replies
     * keep arriving, so a link that is merely full is not declared lost.
     */
    public static final int STUCK_FACTOR = 8;

    /** Connection settings. */
    public record Options(Duration connectTimeout, Duration ioTimeout, SSLContext tls) {
        public Options {
            Objects.requireNonNull(connectTimeout);
            Objects.requireNonNull(ioTimeout);
            if (ioTimeout.isNegative() || ioTimeout.isZero()) throw new IllegalArgumentException("I/O timeout must be positive");
        }

        public static Options defaults() {
            return new Options(Duration.ofSeconds(10), Duration.ofSeconds(30), null);
        }

        public Options withIoTimeout(Duration d) {
            return new Options(connectTimeout, d, tls);
        }

        public Options withConnectTimeout(Duration d) {
            return new Options(d, ioTimeout, tls);
        }

        /** Insist on TLS (NBD_OPT_STARTTLS first; a server that refuses it is refused). See {@link Tls}. */
        public Options withTls(SSLContext ctx) {
            return new Options(connectTimeout, ioTimeout, ctx);
        }
    }

    private static final class Request {
        final int type;
        final long offset;
        final int length;
        final long startNanos = System.nanoTime();
        /** Completed with a READ's data (position 0, limit the length), null for other commands. */
        final CompletableFuture<ByteBuffer> done = new CompletableFuture<>();

        Request(int type, long offset, int length) {
            this.type = type;
            this.offset = offset;
            this.length = length;
        }
    }

    private final String host;
    private final int port;
    private final String export;
    private final Options options;
    private final Socket sock;
    /** The TCP socket under {@link #sock}: closed directly to break the connection, as closing
     *  an SSLSocket would first try to send close_notify to a peer that may not be reading. */
    private final Socket raw;
    private final boolean tls;
    private final DataInputStream in;
    private final DataOutputStream out;
    private final long size;
    private final int flags;
    private final int maxPayload;
    private final Map<Long, Request> pending = new ConcurrentHashMap<>();
    private final AtomicLong handles = new AtomicLong(1);
    private final Object sendLock = new Object();
    /**
     * Plain TCP: a write's header and payload go out in one gathering write on the socket's
     * channel, the payload straight from the caller's buffer (a leg's direct buffer: no copy
     * through a Java array); null with TLS or -Dublkmirror.nbd.channels=false (the stream, as before).
     */
    private final SocketChannel channel;
    /** The request header for {@link #channel} writes (under {@link #sendLock}). */
    private final ByteBuffer header = ByteBuffer.allocateDirect(28);
    /** READ data with {@link #channel}: buffers the reader fills and the caller hands back (8 kept). */
    private final PayloadPool readBufs = new PayloadPool(8);
    private final Thread reader;
    private final Thread watchdog;
    private volatile IOException broken;
    /** System.nanoTime() of the last reply header read: the server's last sign of progress. */
    private volatile long lastReplyNanos = System.nanoTime();
    private volatile boolean closing;

    private NbdStore(String host, int port, String export, Options options, Socket raw, Socket sock, DataInputStream in,
                     DataOutputStream out, long size, int flags, int maxPayload) {
        this.host = host;
        this.port = port;
        this.export = export;
        this.options = options;
        this.sock = sock;
        this.raw = raw;
        this.tls = sock instanceof SSLSocket;
        this.channel = tls || !NbdServer.CHANNELS ? null : raw.getChannel();
        this.in = in;
        this.out = out;
        this.size = size;
        this.flags = flags;
        this.maxPayload = maxPayload;
        this.reader = new Thread(this::readLoop, "nbd-client-" + describe());
        this.reader.setDaemon(true);
        this.watchdog = new Thread(this::watchLoop, "nbd-watchdog-" + describe());
        this.watchdog.setDaemon(true);
    }

    /** Connects to {@code export} on an NBD server with {@link Options#defaults()}. */
    public static NbdStore connect(String host, int port, String export) throws IOException {
        return connect(host, port, export, Options.defaults());
    }

    /** Connects and negotiates (fixed newstyle, NBD_OPT_GO; NBD_OPT_EXPORT_NAME for servers without GO). */
    public static NbdStore connect(String host, int port, String export, Options options) throws IOException {
        String url = url(host, port, export, options.tls() != null);
        Socket s = NbdServer.CHANNELS && options.tls() == null ? SocketChannel.open().socket() : new Socket();
        final Socket rawSocket = s;
        try {
            try {
                s.connect(new InetSocketAddress(host, port), (int) Math.max(1, options.connectTimeout().toMillis()));
            } catch (SocketTimeoutException e) {
                throw new IOException(url + ": no answer within " + options.connectTimeout().toMillis() + " ms (connect timeout); is the gateway up and reachable?", e);
            } catch (IOException e) {
                throw new IOException(url + ": cannot connect: " + e.getMessage() + "; is the gateway running?", e);
            }
            s.setTcpNoDelay(true);
            Keepalive.enable(s);
            // the handshake is part of connecting: bounded by the longer of the two timeouts (a short
            // I/O timeout tuned for a fast link must not refuse a gateway whose JVM answers its first
            // handshake slowly)
            long handshakeMs = Math.max(1, Math.max(options.connectTimeout().toMillis(), options.ioTimeout().toMillis()));
            s.setSoTimeout((int) Math.min(Integer.MAX_VALUE, handshakeMs)); // for the handshake only
            DataInputStream in = new DataInputStream(new BufferedInputStream(s.getInputStream(), 1 << 16));
            DataOutputStream out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream(), 1 << 16));
            long[] sizeFlagsMax;
            try {
                boolean noZeroes = greet(url, in, out);
                if (options.tls() != null) {
                    s = startTls(url, host, port, s, in, out, options.tls());
                    in = new DataInputStream(new BufferedInputStream(s.getInputStream(), 1 << 16));
                    out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream(), 1 << 16));
                }
                sizeFlagsMax = negotiate(url, export, in, out, noZeroes);
            } catch (SocketTimeoutException e) {
                throw new IOException(url + ": the server did not finish the NBD handshake within " + handshakeMs + " ms (the longer of the connect and I/O timeouts)", e);
            } catch (EOFException e) {
                throw new IOException(url + ": the server closed the connection during the handshake ("
                        + (options.tls() != null ? "does the gateway trust our certificate?" : "unknown export, or export in use?") + ")", e);
            } catch (IOException e) {
                if (e.getMessage() != null && e.getMessage().startsWith(url)) throw e;
                throw new IOException(url + ": the NBD handshake failed: " + e.getMessage()
                        + (options.tls() != null ? " (does the gateway trust our certificate?)" : ""), e);
            }
            s.setSoTimeout(0); // the watchdog bounds every request from here on
            NbdStore st = new NbdStore(host, port, export, options, rawSocket, s, in, out, sizeFlagsMax[0], (int) sizeFlagsMax[1], (int) sizeFlagsMax[2]);
            st.reader.start();
            st.watchdog.start();
            return st;
        } catch (IOException | RuntimeException e) {
            rawSocket.close();
            throw e;
        }
    }

    static String url(String host, int port, String export) {
        return url(host, port, export, false);
    }

    static String url(String host, int port, String export, boolean tls) {
        String h = host.indexOf(':') >= 0 ? "[" + host + "]" : host;
        return (tls ? "nbds://" : "nbd://") + h + ":" + port + "/" + export;
    }

    /** Reads the greeting, sends the client flags; returns whether NO_ZEROES was agreed. */
    private static boolean greet(String url, DataInputStream in, DataOutputStream out) throws IOException {
        long magic = in.readLong();
        if (magic != Nbd.NBDMAGIC) throw new IOException(url + ": not an NBD server (bad greeting)");
        long opt = in.readLong();
        if (opt != Nbd.IHAVEOPT) throw new IOException(url + ": the server speaks oldstyle NBD, which is not supported");
        int hflags = in.readUnsignedShort();
        if ((hflags & Nbd.FLAG_FIXED_NEWSTYLE) == 0) {
            throw new IOException(url + ": the server does not support fixed newstyle negotiation");
        }
        boolean noZeroes = (hflags & Nbd.FLAG_NO_ZEROES) != 0;
        out.writeInt(Nbd.FLAG_C_FIXED_NEWSTYLE | (noZeroes ? Nbd.FLAG_C_NO_ZEROES : 0));
        out.flush();
        return noZeroes;
    }

    private static Socket startTls(String url, String host, int port, Socket s, DataInputStream in, DataOutputStream out, SSLContext ctx) throws IOException {
        sendOption(out, Nbd.OPT_STARTTLS, new byte[0]);
        if (in.readLong() != Nbd.OPT_REPLY_MAGIC) throw new IOException(url + ": bad option reply magic from the server");
        int ropt = in.readInt();
        int rtype = in.readInt();
        int rlen = in.readInt();
        if (rlen < 0 || rlen > (1 << 20)) throw new IOException(url + ": option reply too long");
        byte[] data = new byte[rlen];
        in.readFully(data);
        if (ropt != Nbd.OPT_STARTTLS || rtype != Nbd.REP_ACK) {
            String msg = new String(data, StandardCharsets.UTF_8);
            throw new IOException(url + ": TLS was asked for but the server will not start it: " + (msg.isEmpty() ? "" : msg + " ")
                    + "(" + Nbd.replyName(rtype) + ")");
        }
        SSLSocket t = (SSLSocket) ctx.getSocketFactory().createSocket(s, host, port, true);
        t.setUseClientMode(true);
        t.setEnabledProtocols(Tls.PROTOCOLS);
        SSLParameters p = t.getSSLParameters();
        p.setEndpointIdentificationAlgorithm("HTTPS"); // the server's certificate must name the host dialled
        t.setSSLParameters(p);
        try {
            t.startHandshake();
        } catch (IOException e) {
            throw new IOException(url + ": TLS handshake failed: " + e.getMessage()
                    + " (is the server's certificate trusted, and is ours trusted by the gateway?)", e);
        }
        return t;
    }

    /** Returns {size, transmission flags, max payload}. */
    private static long[] negotiate(String url, String export, DataInputStream in, DataOutputStream out, boolean noZeroes) throws IOException {
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        // NBD_OPT_GO with a request for NBD_INFO_BLOCK_SIZE
        ByteBuffer go = ByteBuffer.allocate(4 + name.length + 2 + 2).putInt(name.length).put(name).putShort((short) 1).putShort((short) Nbd.INFO_BLOCK_SIZE);
        sendOption(out, Nbd.OPT_GO, go.array());
        long size = -1;
        int flags = 0;
        int maxPayload = Nbd.MAX_PAYLOAD;
        while (true) {
            long rmagic = in.readLong();
            if (rmagic != Nbd.OPT_REPLY_MAGIC) throw new IOException(url + ": bad option reply magic from the server");
            int ropt = in.readInt();
            int rtype = in.readInt();
            int rlen = in.readInt();
            if (rlen < 0 || rlen > (1 << 20)) throw new IOException(url + ": option reply of " + Integer.toUnsignedString(rlen) + " bytes is too long");
            byte[] data = new byte[rlen];
            in.readFully(data);
            if (ropt != Nbd.OPT_GO) throw new IOException(url + ": reply to option " + ropt + " when GO was asked");
            if (rtype == Nbd.REP_INFO) {
                ByteBuffer b = ByteBuffer.wrap(data);
                if (b.remaining() < 2) throw new IOException(url + ": short NBD_REP_INFO");
                int it = b.getShort() & 0xffff;
                if (it == Nbd.INFO_EXPORT && b.remaining() >= 10) {
                    size = b.getLong();
                    flags = b.getShort() & 0xffff;
                } else if (it == Nbd.INFO_BLOCK_SIZE && b.remaining() >= 12) {
                    b.getInt(); // minimum: we send what the caller asks, any alignment is the caller's
                    b.getInt();
                    long max = b.getInt() & 0xffffffffL;
                    if (max > 0) maxPayload = (int) Math.min(max, Nbd.MAX_PAYLOAD);
                }
            } else if (rtype == Nbd.REP_ACK) {
                if (size < 0) throw new IOException(url + ": the server sent no NBD_INFO_EXPORT");
                return new long[] {size, flags, maxPayload};
            } else if (rtype == Nbd.REP_ERR_UNSUP) {
                // an old server without NBD_OPT_GO: NBD_OPT_EXPORT_NAME cannot report errors
                out.writeLong(Nbd.IHAVEOPT);
                out.writeInt(Nbd.OPT_EXPORT_NAME);
                out.writeInt(name.length);
                out.write(name);
                out.flush();
                size = in.readLong();
                flags = in.readUnsignedShort();
                if (!noZeroes) in.readFully(new byte[124]);
                return new long[] {size, flags, maxPayload};
            } else if ((rtype & Nbd.REP_ERR) != 0) {
                String msg = new String(data, StandardCharsets.UTF_8);
                throw new IOException(url + ": the server refused the export: " + (msg.isEmpty() ? "" : msg + " ") + "(" + Nbd.replyName(rtype) + ")");
            }
            // unknown non-error replies are ignored, as the spec allows
        }
    }

    private static void sendOption(DataOutputStream out, int opt, byte[] data) throws IOException {
        out.writeLong(Nbd.IHAVEOPT);
        out.writeInt(opt);
        out.writeInt(data.length);
        out.write(data);
        out.flush();
    }

    /** The transmission flags the server sent (NBD_FLAG_*). */
    public int transmissionFlags() {
        return flags;
    }

    public boolean isReadOnly() {
        return (flags & Nbd.TF_READ_ONLY) != 0;
    }

    /** Whether the connection is still usable (no timeout, no drop, not closed). */
    public boolean isHealthy() {
        return broken == null;
    }

    @Override
    public long size() throws IOException {
        return size;
    }

    @Override
    public boolean healthy() {
        return isHealthy();
    }

    /** A network round trip per request: the forker writes this leg concurrently with the other. */
    @Override
    public boolean slow() {
        return true;
    }

    @Override
    public String describe() {
        return url(host, port, export, tls);
    }

    // ------------------------------------------------------------------ I/O

    private void checkRange(String what, long pos, long len) throws IOException {
        if (pos < 0 || len < 0 || pos > size - len) {
            throw new EOFException(describe() + ": " + what + " of " + len + " bytes at " + pos + " is outside the export (" + size + " bytes)");
        }
    }

    private void checkWritable(String what) throws IOException {
        if (isReadOnly()) throw new IOException(describe() + ": " + what + " refused: the export is read-only");
    }

    @Override
    public void read(long pos, ByteBuffer dst) throws IOException {
        int len = dst.remaining();
        checkRange("read", pos, len);
        List<Request> rs = new ArrayList<>();
        for (int off = 0; off < len; off += maxPayload) {
            int n = Math.min(maxPayload, len - off);
            rs.add(send(Nbd.CMD_READ, 0, pos + off, n, null));
        }
        for (Request r : rs) {
            ByteBuffer data = await(r);
            dst.put(data);
            readBufs.give(data);
        }
    }

    @Override
    public void write(long pos, ByteBuffer src, boolean fua) throws IOException {
        int len = src.remaining();
        checkRange("write", pos, len);
        checkWritable("write");
        boolean nativeFua = fua && (flags & Nbd.TF_SEND_FUA) != 0;
        List<Request> rs = new ArrayList<>();
        for (int off = 0; off < len; off += maxPayload) {
            int n = Math.min(maxPayload, len - off);
            ByteBuffer part = src.slice(src.position() + off, n);
            rs.add(send(Nbd.CMD_WRITE, nativeFua ? Nbd.CMD_FLAG_FUA : 0, pos + off, n, part));
        }
        awaitAll(rs);
        src.position(src.limit());
        if (fua && !nativeFua) flush();
    }

    @Override
    public void flush() throws IOException {
        if ((flags & Nbd.TF_SEND_FLUSH) == 0) {
            check();
            return; // the server has no write cache to flush
        }
        await(send(Nbd.CMD_FLUSH, 0, 0, 0, null));
    }

    /** WRITE_ZEROES (reads return zeroes afterwards, as Store promises; TRIM does not), else zero writes. */
    @Override
    public void discard(long pos, long len) throws IOException {
        checkRange("discard", pos, len);
        checkWritable("discard");
        if (len == 0) return;
        if ((flags & Nbd.TF_SEND_WRITE_ZEROES) != 0) {
            List<Request> rs = new ArrayList<>();
            final long chunk = 1L << 30;
            for (long off = 0; off < len; off += chunk) {
                int n = (int) Math.min(chunk, len - off);
                rs.add(send(Nbd.CMD_WRITE_ZEROES, 0, pos + off, n, null));
            }
            awaitAll(rs);
            return;
        }
        ByteBuffer zero = ByteBuffer.allocate((int) Math.min(len, maxPayload));
        List<Request> rs = new ArrayList<>();
        for (long off = 0; off < len; off += zero.capacity()) {
            int n = (int) Math.min(zero.capacity(), len - off);
            rs.add(send(Nbd.CMD_WRITE, 0, pos + off, n, zero.duplicate().limit(n)));
        }
        awaitAll(rs);
    }

    /** Sends one request without the client's own checks (tests of the server's error replies). */
    byte[] requestUnchecked(int type, int cmdFlags, long offset, int length, ByteBuffer payload) throws IOException {
        ByteBuffer b = await(send(type, cmdFlags, offset, length, payload));
        if (b == null) return null;
        byte[] a = new byte[b.remaining()];
        b.get(a);
        return a;
    }

    private void check() throws IOException {
        IOException b = broken;
        if (b != null) throw new IOException(describe() + ": " + b.getMessage(), b);
    }

    /**
     * Plain TCP ({@link NbdServer#ZERO_COPY}) from a local file: each WRITE's header, then its
     * payload sent from the file's page cache by sendfile(2) (one copy fewer than reading it into
     * a buffer and sending that). The caller keeps the file's range unchanged until this returns
     * (the resync holds the range lock): the gateway has replied by then, so it has every byte.
     */
    @Override
    public boolean transferFrom(long pos, Store src, long srcPos, int len) throws IOException {
        // not from a block device: FileChannel.transferTo bounds itself by size(), which the JDK
        // takes from fstat, 0 for a block device (FileStore sizes those with BLKGETSIZE64)
        if (channel == null || !NbdServer.ZERO_COPY || !(src instanceof FileStore f) || f.isBlockDevice()) return false;
        checkRange("write", pos, len);
        checkWritable("write");
        if (srcPos < 0 || srcPos + len > f.size()) {
            throw new EOFException("read of " + len + " bytes at " + srcPos + " past the end of " + f.describe() + " (" + f.size() + " bytes)");
        }
        List<Request> rs = new ArrayList<>();
        for (int off = 0; off < len; off += maxPayload) {
            int n = Math.min(maxPayload, len - off);
            rs.add(send(Nbd.CMD_WRITE, 0, pos + off, n, null, f, srcPos + off));
        }
        awaitAll(rs);
        return true;
    }

    private Request send(int type, int cmdFlags, long offset, int length, ByteBuffer payload) throws IOException {
        return send(type, cmdFlags, offset, length, payload, null, 0);
    }

    /** Sends one request; its payload is {@code payload}, or {@code length} bytes of {@code file} at {@code filePos}. */
    private Request send(int type, int cmdFlags, long offset, int length, ByteBuffer payload, FileStore file, long filePos)
            throws IOException {
        check();
        long handle = handles.getAndIncrement();
        Request r = new Request(type, offset, length);
        pending.put(handle, r);
        try {
            synchronized (sendLock) {
                check();
                if (channel != null && (payload != null || file != null)) {
                    header.clear().putInt(Nbd.REQUEST_MAGIC).putShort((short) cmdFlags).putShort((short) type)
                            .putLong(handle).putLong(offset).putInt(length).flip();
                    if (file != null) { // the header, then the payload from the file's page cache (sendfile)
                        while (header.hasRemaining()) channel.write(header);
                        file.transferTo(filePos, length, channel);
                    } else { // header and payload in one gathering write
                        ByteBuffer[] v = {header, payload.duplicate()};
                        while (v[0].hasRemaining() || v[1].hasRemaining()) channel.write(v);
                    }
                    return r;
                }
                out.writeInt(Nbd.REQUEST_MAGIC);
                out.writeShort(cmdFlags);
                out.writeShort(type);
                out.writeLong(handle);
                out.writeLong(offset);
                out.writeInt(length);
                if (payload != null) {
                    if (payload.hasArray()) {
                        out.write(payload.array(), payload.arrayOffset() + payload.position(), payload.remaining());
                    } else {
                        byte[] tmp = new byte[Math.min(payload.remaining(), 1 << 20)];
                        ByteBuffer p = payload.duplicate();
                        while (p.hasRemaining()) {
                            int n = Math.min(tmp.length, p.remaining());
                            p.get(tmp, 0, n);
                            out.write(tmp, 0, n);
                        }
                    }
                }
                out.flush();
            }
        } catch (IOException e) {
            pending.remove(handle);
            fail(broken != null ? broken : new IOException("connection lost while sending " + Nbd.commandName(type) + ": " + e.getMessage(), e));
            check();
            throw e;
        }
        return r;
    }

    private ByteBuffer await(Request r) throws IOException {
        long waitMs = STUCK_FACTOR * options.ioTimeout().toMillis() + 1000; // the watchdog fires first; this is a backstop
        try {
            return r.done.get(waitMs, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof IOException io) {
                throw new IOException(describe() + ": " + io.getMessage(), io);
            }
            throw new IOException(describe() + ": " + c, c);
        } catch (TimeoutException e) {
            fail(new IOException("no reply to " + Nbd.commandName(r.type) + " within " + waitMs + " ms"));
            check();
            throw new IOException(describe() + ": timed out");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException(describe() + ": interrupted while waiting for " + Nbd.commandName(r.type));
        }
    }

    private void awaitAll(List<Request> rs) throws IOException {
        IOException first = null;
        for (Request r : rs) {
            try {
                await(r);
            } catch (IOException e) {
                if (first == null) first = e;
            }
        }
        if (first != null) throw first;
    }

    /** Breaks the connection: every pending and later call fails with {@code why}. */
    private void fail(IOException why) {
        synchronized (this) {
            if (broken == null) broken = why;
        }
        try {
            raw.close();
        } catch (IOException ignored) {
        }
        IOException b = broken;
        for (Long h : pending.keySet()) {
            Request r = pending.remove(h);
            if (r != null) r.done.completeExceptionally(b);
        }
    }

    private void readLoop() {
        try {
            // plain TCP: replies through the channel, READ data straight into direct buffers;
            // TLS (and -Dublkmirror.nbd.channels=false): the same reads, from the stream
            WireIn w = channel != null ? new WireIn(channel, in.readNBytes(in.available()))
                    : new WireIn(java.nio.channels.Channels.newChannel(in), new byte[0]);
            while (true) {
                int magic = w.readInt();
                lastReplyNanos = System.nanoTime();
                if (magic != Nbd.SIMPLE_REPLY_MAGIC) {
                    throw new IOException("unexpected reply magic 0x" + Integer.toHexString(magic)
                            + (magic == Nbd.STRUCTURED_REPLY_MAGIC ? " (structured reply, which was not negotiated)" : ""));
                }
                int err = w.readInt();
                long handle = w.readLong();
                Request r = pending.remove(handle);
                if (r == null) throw new IOException("reply for unknown handle " + handle);
                if (err != 0) {
                    if (err == Nbd.ESHUTDOWN) {
                        fail(new IOException("the server is shutting down (ESHUTDOWN)"));
                    }
                    r.done.completeExceptionally(new IOException("the server answered " + Nbd.errorName(err) + " to "
                            + Nbd.commandName(r.type) + " of " + r.length + " bytes at " + r.offset));
                    continue;
                }
                if (r.type == Nbd.CMD_READ) {
                    ByteBuffer data = readBufs.take(r.length);
                    w.readFully(data);
                    data.flip();
                    lastReplyNanos = System.nanoTime();
                    r.done.complete(data);
                } else {
                    r.done.complete(null);
                }
            }
        } catch (IOException e) {
            if (closing) {
                fail(new IOException("connection closed"));
            } else {
                String m = e instanceof EOFException ? "the server closed the connection" : "connection lost: " + e.getMessage();
                fail(new IOException(m, e));
            }
        }
    }

    private void watchLoop() {
        long timeoutNanos = options.ioTimeout().toNanos(), stuckNanos = STUCK_FACTOR * timeoutNanos;
        long tick = Math.max(10, Math.min(200, options.ioTimeout().toMillis() / 10));
        while (broken == null) {
            try {
                Thread.sleep(tick);
            } catch (InterruptedException e) {
                return;
            }
            String why = overdue(System.nanoTime(), timeoutNanos, stuckNanos);
            if (why != null) {
                fail(new IOException(why + "; treating the secondary as unreachable"));
                return;
            }
        }
    }

    /** Why the connection counts as dead at {@code now}, or null while the server makes progress. */
    private String overdue(long now, long timeoutNanos, long stuckNanos) {
        Request oldest = null;
        int n = 0;
        for (Request r : pending.values()) {
            n++;
            if (oldest == null || r.startNanos - oldest.startNanos < 0) oldest = r;
        }
        if (oldest == null) return null;
        String what = Nbd.commandName(oldest.type) + " of " + oldest.length + " bytes at " + oldest.offset;
        long silentSince = lastReplyNanos - oldest.startNanos > 0 ? lastReplyNanos : oldest.startNanos;
        if (now - silentSince > timeoutNanos) {
            return "no reply to " + what + (n > 1 ? " (the oldest of " + n + " pending)" : "") + " and nothing from the server within "
                    + options.ioTimeout().toMillis() + " ms (I/O timeout)";
        }
        if (now - oldest.startNanos > stuckNanos) {
            return "no reply to " + what + " within " + stuckNanos / 1_000_000 + " ms (" + STUCK_FACTOR
                    + " x the I/O timeout) while the server answered others";
        }
        return null;
    }

    /** Sends NBD_CMD_DISC once nothing is pending (waiting at most the I/O timeout), then closes. */
    @Override
    public void close() throws IOException {
        if (closing) return;
        closing = true;
        try {
            if (broken == null) {
                long deadline = System.nanoTime() + options.ioTimeout().toNanos();
                while (!pending.isEmpty() && broken == null && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                if (broken == null) {
                    synchronized (sendLock) {
                        out.writeInt(Nbd.REQUEST_MAGIC);
                        out.writeShort(0);
                        out.writeShort(Nbd.CMD_DISC);
                        out.writeLong(handles.getAndIncrement());
                        out.writeLong(0);
                        out.writeInt(0);
                        out.flush();
                    }
                    // the server hangs up once it has released the export: wait for that, so that a
                    // store opened right after this one finds the export free
                    reader.join(Math.min(options.ioTimeout().toMillis(), 5000));
                }
            }
        } catch (IOException ignored) {
            // closing anyway
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            fail(new IOException("closed"));
            watchdog.interrupt();
        }
    }
}
