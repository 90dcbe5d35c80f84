package org.ublkmirror.cli;

import org.ublkmirror.logship.LogReceiver;
import org.ublkmirror.logship.ReceiverStore;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.net.BindException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

@Command(name = "log-receiver", description = {"Keep the tracking logs mirrors ship to this host (--ship-to), in the foreground until SIGTERM.",
        "Each mirror's log is stored in DIR/NAME@VOLUME-UUID/ (two copies, written with fsync and rename); an older, corrupt or foreign log is refused.",
        "Read them back with 'mirrorctl log --from HOST:PORT'."})
final class LogReceiverCmd implements Callable<Integer> {
    @Option(names = "--listen", paramLabel = "HOST:PORT", defaultValue = "127.0.0.1:" + LogReceiver.DEFAULT_PORT,
            description = "Address to listen on (default ${DEFAULT-VALUE}: loopback only; name another address to serve the network).")
    String listen;

    @Option(names = "--dir", required = true, paramLabel = "DIR", description = "Where the received logs are kept (created if missing).")
    Path dir;

    @Option(names = "--tls-keystore", paramLabel = "P12",
            description = "Require TLS: the receiver's certificate and key, a PKCS#12 file.")
    Path tlsKeyStore;

    @Option(names = "--tls-truststore", paramLabel = "P12",
            description = "With --tls-keystore: the certificates (or their CA) mirrors must present, a PKCS#12 file.")
    Path tlsTrustStore;

    @Option(names = "--tls-password-file", paramLabel = "FILE", description = "The password of both PKCS#12 files (first line of FILE).")
    Path tlsPasswordFile;

    @Option(names = "--quiet", description = "Do not log stored logs and refusals.")
    boolean quiet;

    static javax.net.ssl.SSLContext tls(Path key, Path trust, Path pwFile) throws Exception {
        if (key == null && trust == null && pwFile == null) return null;
        if (key == null || trust == null || pwFile == null) {
            throw new IllegalArgumentException("TLS needs --tls-keystore, --tls-truststore and --tls-password-file together");
        }
        if (!Files.exists(pwFile)) throw new NoSuchFileException(pwFile.toString(), null, "no such password file");
        String pw = Files.readAllLines(pwFile).stream().findFirst().orElse("");
        return org.ublkmirror.gateway.Tls.context(key, pw.toCharArray(), trust, pw.toCharArray());
    }

    @Override
    public Integer call() throws Exception {
        InetSocketAddress addr = GatewayCmd.parseListen(listen);
        if (addr.isUnresolved()) throw new IllegalArgumentException("--listen " + listen + ": cannot resolve host " + addr.getHostString());
        javax.net.ssl.SSLContext ctx = tls(tlsKeyStore, tlsTrustStore, tlsPasswordFile);
        if (Files.exists(dir) && !Files.isDirectory(dir)) {
            throw new IllegalArgumentException("--dir " + dir + " is not a directory; name a directory (it is created if missing)");
        }
        ReceiverStore store = ReceiverStore.open(dir);
        for (String p : store.loadProblems()) System.err.println("log-receiver: " + p);
        LogReceiver r;
        try {
            r = LogReceiver.start(addr, store, ctx);
        } catch (BindException e) {
            throw new Mirrorctl.Failure(Mirrorctl.IO, e.getMessage() + "; pick another port with --listen, or stop what holds it");
        }
        if (!quiet) r.logTo(line -> System.err.println("log-receiver: " + line));
        String host = addr.getAddress().getHostAddress();
        System.out.println("receiving tracking logs on " + (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + r.port()
                + " into " + dir.toAbsolutePath() + " (" + store.list().size() + " held" + (ctx != null ? ", TLS with client certificates" : "") + ")");
        System.out.flush();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            r.close();
            stopped.countDown();
        }, "log-receiver-stop"));
        stopped.await();
        return Mirrorctl.OK;
    }
}
