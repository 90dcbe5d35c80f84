package org.ublkmirror.frontend.fuse;

import org.ublkmirror.frontend.StoreTarget;
import org.ublkmirror.leg.FileStore;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;

/**
 * Serves one file (or block device) through the FUSE + loop frontend, standalone: for benchmarks
 * and manual tests. Prints the device path on the first line of stdout, then serves until stdin
 * reaches its end or the process gets SIGTERM/SIGINT, and tears everything down.
 *
 * <pre>java -cp ... org.ublkmirror.frontend.fuse.FuseServe BACKING MOUNTDIR [--workers N] [--block-size B]
 *     [--direct-io-open] [--loop-dio off] [--watchdog SECONDS]</pre>
 */
public final class FuseServe {
    private FuseServe() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: FuseServe BACKING MOUNTDIR [--workers N] [--block-size B] [--direct-io-open]"
                    + " [--loop-dio off] [--watchdog SECONDS]");
            System.exit(2);
        }
        Path backing = Path.of(args[0]);
        Path mnt = Path.of(args[1]);
        FuseFrontend.Options o = FuseFrontend.Options.defaults();
        int bs = 4096;
        for (int i = 2; i < args.length; i++) {
            switch (args[i]) {
                case "--workers": o = o.withWorkers(Integer.parseInt(args[++i])); break;
                case "--block-size": bs = Integer.parseInt(args[++i]); break;
                case "--direct-io-open": o = o.withDirectIoOpen(true); break;
                case "--loop-dio": o = o.withLoopDirectIo(!args[++i].equals("off")); break;
                case "--watchdog": o = o.withWatchdogTimeout(Duration.ofSeconds(Long.parseLong(args[++i]))); break;
                default:
                    System.err.println("unknown option " + args[i]);
                    System.exit(2);
            }
        }
        FileStore store = FileStore.open(backing);
        FuseDevice dev = FuseFrontend.start(new StoreTarget(store, bs), mnt, o);
        System.out.println(dev.device());
        System.out.flush();
        System.err.println("serving " + backing + " as " + dev.device() + " through " + dev.backingFile()
                + " (" + dev.negotiated() + ", fusectl " + dev.connectionId() + ")");
        CountDownLatch stop = new CountDownLatch(1);
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
        // SIGTERM/SIGINT run the device's shutdown hook, which tears down.
        stop.await();
        try {
            dev.close();
        } finally {
            store.close();
        }
        System.err.println("stopped: " + dev.requestCount() + " requests, " + dev.errorCount() + " errors, "
                + dev.flushCount() + " flushes");
    }
}
