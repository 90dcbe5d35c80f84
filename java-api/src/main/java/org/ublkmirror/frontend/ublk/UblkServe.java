package org.ublkmirror.frontend.ublk;

import org.ublkmirror.frontend.StoreTarget;
import org.ublkmirror.leg.FileStore;

import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

/**
 * Serves one file (or block device) through ublk, standalone, without a mirror: benchmarks (the
 * "ublk with one leg" baseline) and manual tests. Prints the device path on the first line of
 * stdout, serves until stdin reaches its end (or SIGTERM), then deletes the device and prints
 * its counters on stderr.
 *
 * <pre>java -cp ... org.ublkmirror.frontend.ublk.UblkServe BACKING [--queues N] [--depth D] [--workers W]
 *     [--block-size B] [--max-io BYTES] [--zero-copy auto|off]</pre>
 * {@code --workers 0} serves each request on its queue thread, one at a time (the design the
 * worker hand-off replaced; kept to measure against).
 */
public final class UblkServe {
    private UblkServe() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: UblkServe BACKING [--queues N] [--depth D] [--workers W] [--block-size B] [--max-io BYTES] [--zero-copy auto|off]");
            System.exit(2);
        }
        UblkDevice.Options o = UblkDevice.Options.defaults().withRecovery(false);
        int bs = 4096;
        for (int i = 1; i < args.length; i++) {
            switch (args[i]) {
                case "--queues": o = o.withQueues(Integer.parseInt(args[++i])); break;
                case "--depth": o = o.withDepth(Integer.parseInt(args[++i])); break;
                case "--workers": o = o.withWorkers(Integer.parseInt(args[++i])); break;
                case "--block-size": bs = Integer.parseInt(args[++i]); break;
                case "--max-io": o = o.withMaxIo(Integer.parseInt(args[++i])); break;
                case "--zero-copy": o = o.withZeroCopy(parseOnOff(args[++i])); break;
                default:
                    System.err.println("unknown option " + args[i]);
                    System.exit(2);
            }
        }
        FileStore store = FileStore.open(Path.of(args[0]));
        UblkDevice dev = UblkDevice.create(new StoreTarget(store, bs), o, "ublkserve");
        System.out.println(dev.device());
        System.out.flush();
        System.err.println("serving " + args[0] + " as " + dev.device() + " (" + o + ")"
                + "; I/O scheduler " + dev.scheduler()
                + (dev.zeroCopy() ? "; zero copy, " : "; copying through buffers, ") + dev.readsDescription()
                + "; " + dev.writesDescription());
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(stop::countDown));
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // drain
                }
            } catch (IOException ignored) {
                // treated as the end
            }
            stop.countDown();
        }, "stdin-watch");
        stdin.setDaemon(true);
        stdin.start();
        stop.await();
        long[] c = dev.counters();
        long[] d = dev.directReads();
        boolean direct = dev.directReadSource() != null;
        dev.close();
        store.close();
        System.err.printf("stopped: %d requests in %d batches (%.2f per native call), %d wake-ups, %d writes on the queue thread,"
                + " %d leg writes from the request's buffer, %d leg writes copied into a mapping (%d failed),"
                + " %d writes started with their batch%n", c[0], c[1],
                c[1] == 0 ? 0.0 : (double) c[0] / c[1], c[2], c[3], c[4], c[6], c[7], c[5]);
        if (direct) System.err.printf("direct reads: %d served without Java, %d handed back%n", d[0], d[1]);
    }

    static boolean parseOnOff(String v) {
        switch (v) {
            case "auto": case "on": return true;
            case "off": return false;
            default:
                System.err.println("--zero-copy takes auto or off, not " + v);
                System.exit(2);
                return false;
        }
    }
}
