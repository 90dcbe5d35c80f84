package org.ublkmirror.it.net;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A TCP relay that holds every byte for a fixed time in each direction: a link delay for kernels
 * without sch_netem (this project's CI kernel has CONFIG_NET_SCH_NETEM unset and no modules). Run
 * inside the gateway's network namespace between the mirror (which dials the relay's port over
 * the veth) and the gateway (on the namespace's own address), so a cut of the veth still cuts the
 * mirror's connection, and the delay applies to every NBD request and reply.
 *
 * <p>Per connection and direction one reader and one writer: the reader stamps each chunk with
 * its arrival time and queues it; the writer sends it at arrival + delay (FIFO: the delay is
 * constant, so nothing is reordered). At most {@link #MAX_QUEUED} bytes wait per direction (the
 * reader stops, so TCP pushes back). An end of stream is passed on (half-close) after the same
 * delay; an error closes both sockets, which the other side sees at once. TCP keepalive on both
 * sockets (idle 10 s, 3 probes 5 s apart, as the gateway's) finds a peer that vanished behind a
 * cut link. {@code hold} statistics (min and max of send time - arrival time) prove the delay.
 *
 * <pre>java -cp ... org.ublkmirror.it.net.DelayRelay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS</pre>
 * prints "relaying ..." once listening; on SIGTERM prints "relay stats: ...".
 */
public final class DelayRelay {
    static final int MAX_QUEUED = 8 << 20;
    static final AtomicLong chunks = new AtomicLong(), bytes = new AtomicLong(), minHoldNs = new AtomicLong(Long.MAX_VALUE),
            maxHoldNs = new AtomicLong(), connections = new AtomicLong();

    private record Chunk(byte[] data, int len, long arrivedNs) {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: DelayRelay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS");
            System.exit(2);
        }
        InetSocketAddress listen = new InetSocketAddress(args[0], Integer.parseInt(args[1]));
        InetSocketAddress target = new InetSocketAddress(args[2], Integer.parseInt(args[3]));
        long delayNs = TimeUnit.MILLISECONDS.toNanos(Long.parseLong(args[4]));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> System.out.println(stats(delayNs))));
        try (ServerSocket ss = new ServerSocket()) {
            ss.setReuseAddress(true);
            ss.bind(listen);
            System.out.println("relaying " + listen + " -> " + target + " with " + args[4] + " ms each way");
            System.out.flush();
            while (true) {
                Socket a = ss.accept();
                connections.incrementAndGet();
                Thread t = new Thread(() -> connect(a, target, delayNs), "relay-conn");
                t.setDaemon(true);
                t.start();
            }
        }
    }

    static String stats(long delayNs) {
        long min = minHoldNs.get();
        return "relay stats: " + connections.get() + " connection(s), " + chunks.get() + " chunk(s), " + bytes.get()
                + " bytes, hold min " + (min == Long.MAX_VALUE ? "-" : String.format("%.2f", min / 1e6)) + " ms, max "
                + String.format("%.2f", maxHoldNs.get() / 1e6) + " ms (delay " + delayNs / 1_000_000 + " ms)";
    }

    private static void keepalive(Socket s) throws IOException {
        s.setKeepAlive(true);
        s.setTcpNoDelay(true);
        try {
            s.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPIDLE, 10);
            s.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPINTERVAL, 5);
            s.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPCOUNT, 3);
        } catch (UnsupportedOperationException ignored) {
            // keepalive with the system's defaults
        }
    }

    private static void connect(Socket a, InetSocketAddress target, long delayNs) {
        Socket b = new Socket();
        try {
            keepalive(a);
            b.connect(target, 5000);
            keepalive(b);
        } catch (IOException e) {
            closeBoth(a, b);
            return;
        }
        java.util.concurrent.atomic.AtomicInteger ended = new java.util.concurrent.atomic.AtomicInteger();
        pump(a, b, delayNs, ended);
        pump(b, a, delayNs, ended);
    }

    private static void closeBoth(Socket a, Socket b) {
        try {
            a.close();
        } catch (IOException ignored) {
            // closing
        }
        try {
            b.close();
        } catch (IOException ignored) {
            // closing
        }
    }

    /** One direction: from's input to to's output, each chunk held for delayNs. */
    private static void pump(Socket from, Socket to, long delayNs, java.util.concurrent.atomic.AtomicInteger ended) {
        LinkedBlockingQueue<Chunk> q = new LinkedBlockingQueue<>();
        AtomicLong queued = new AtomicLong();
        Object space = new Object();
        Thread reader = new Thread(() -> {
            try {
                InputStream in = from.getInputStream();
                while (true) {
                    byte[] buf = new byte[64 << 10];
                    int n = in.read(buf);
                    if (n < 0) {
                        q.put(new Chunk(null, -1, System.nanoTime()));
                        return;
                    }
                    q.put(new Chunk(buf, n, System.nanoTime()));
                    synchronized (space) {
                        while (queued.addAndGet(n) > MAX_QUEUED && !from.isClosed()) {
                            queued.addAndGet(-n);
                            space.wait(50);
                        }
                    }
                }
            } catch (IOException | InterruptedException e) {
                closeBoth(from, to);
                q.offer(new Chunk(null, -2, System.nanoTime()));
            }
        }, "relay-read");
        Thread writer = new Thread(() -> {
            try {
                OutputStream out = to.getOutputStream();
                while (true) {
                    Chunk c = q.take();
                    long wait = c.arrivedNs() + delayNs - System.nanoTime();
                    if (wait > 0) TimeUnit.NANOSECONDS.sleep(wait);
                    if (c.len() == -1) {
                        to.shutdownOutput(); // the end of stream, passed on after the same delay
                        if (ended.incrementAndGet() == 2) closeBoth(from, to); // both directions done
                        return;
                    }
                    if (c.len() < 0) return;
                    long hold = System.nanoTime() - c.arrivedNs();
                    out.write(c.data(), 0, c.len());
                    out.flush();
                    minHoldNs.accumulateAndGet(hold, Math::min);
                    maxHoldNs.accumulateAndGet(hold, Math::max);
                    chunks.incrementAndGet();
                    bytes.addAndGet(c.len());
                    queued.addAndGet(-c.len());
                    synchronized (space) {
                        space.notifyAll();
                    }
                }
            } catch (IOException | InterruptedException e) {
                closeBoth(from, to);
            }
        }, "relay-write");
        reader.setDaemon(true);
        writer.setDaemon(true);
        reader.start();
        writer.start();
    }
}
