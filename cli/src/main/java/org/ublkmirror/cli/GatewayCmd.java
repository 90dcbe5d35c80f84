package org.ublkmirror.cli;

import org.ublkmirror.gateway.Export;
import org.ublkmirror.gateway.NbdServer;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Store;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

@Command(name = "gateway", description = {"Serve secondary volumes over NBD (the backup component), in the foreground until SIGTERM.",
        "Each export is a whole leg (its metadata included): the primary names it as nbd://HOST:PORT/NAME.",
        "qemu-nbd, nbdinfo and qemu-io can use it too."})
final class GatewayCmd implements Callable<Integer> {
    @Option(names = "--export", required = true, paramLabel = "NAME=PATH",
            description = "Serve the file or block device PATH as export NAME (repeatable).")
    List<String> exports = new ArrayList<>();

    @Option(names = "--listen", paramLabel = "HOST:PORT", defaultValue = "127.0.0.1:10809",
            description = "Address to listen on (default ${DEFAULT-VALUE}: loopback only; name another address to serve the network).")
    String listen;

    @Option(names = "--shared-write", description = "Let several clients write one export at once (else a second client is refused).")
    boolean sharedWrite;

    @Option(names = "--read-only", description = "Refuse writes to every export.")
    boolean readOnly;

    @Option(names = "--tls-keystore", paramLabel = "P12",
            description = "Require TLS (STARTTLS): the gateway's certificate and key, a PKCS#12 file.")
    Path tlsKeyStore;

    @Option(names = "--tls-truststore", paramLabel = "P12",
            description = "With --tls-keystore: the certificates (or their CA) clients must present, a PKCS#12 file.")
    Path tlsTrustStore;

    @Option(names = "--tls-password-file", paramLabel = "FILE",
            description = "The password of both PKCS#12 files (first line of FILE).")
    Path tlsPasswordFile;

    @Option(names = "--quiet", description = "Do not log connections and refusals.")
    boolean quiet;

    static InetSocketAddress parseListen(String s) {
        int colon = s.lastIndexOf(':');
        if (colon <= 0 || colon == s.length() - 1) {
            throw new IllegalArgumentException("--listen " + s + ": give HOST:PORT, e.g. 127.0.0.1:10809");
        }
        String host = s.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) host = host.substring(1, host.length() - 1);
        int port;
        try {
            port = Integer.parseInt(s.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--listen " + s + ": port '" + s.substring(colon + 1) + "' is not a number");
        }
        if (port < 0 || port > 65535) throw new IllegalArgumentException("--listen " + s + ": port out of range");
        return new InetSocketAddress(host, port);
    }

    @Override
    public Integer call() throws Exception {
        InetSocketAddress addr = parseListen(listen);
        if (addr.isUnresolved()) throw new IllegalArgumentException("--listen " + listen + ": cannot resolve host " + addr.getHostString());
        Map<String, Path> paths = new LinkedHashMap<>();
        for (String e : exports) {
            int eq = e.indexOf('=');
            if (eq < 0 || eq == e.length() - 1) throw new IllegalArgumentException("--export " + e + ": give NAME=PATH");
            String name = e.substring(0, eq);
            if (paths.put(name, Path.of(e.substring(eq + 1))) != null) {
                throw new IllegalArgumentException("--export " + e + ": export '" + name + "' named twice");
            }
        }
        javax.net.ssl.SSLContext tls = null;
        if (tlsKeyStore != null || tlsTrustStore != null) {
            if (tlsKeyStore == null || tlsTrustStore == null || tlsPasswordFile == null) {
                throw new IllegalArgumentException("TLS needs --tls-keystore, --tls-truststore and --tls-password-file together");
            }
            if (!Files.exists(tlsPasswordFile)) throw new NoSuchFileException(tlsPasswordFile.toString(), null, "no such password file");
            String pw = Files.readAllLines(tlsPasswordFile).stream().findFirst().orElse("");
            tls = org.ublkmirror.gateway.Tls.context(tlsKeyStore, pw.toCharArray(), tlsTrustStore, pw.toCharArray());
        }
        List<Store> stores = new ArrayList<>();
        Map<String, Export> served = new LinkedHashMap<>();
        NbdServer server = null;
        try {
            for (Map.Entry<String, Path> en : paths.entrySet()) {
                Path p = en.getValue();
                if (!Files.exists(p)) throw new NoSuchFileException(p.toString(), null, "no such file or device (export '" + en.getKey() + "'); create it first, e.g. 'truncate -s 10G " + p + "'");
                FileStore fs = readOnly ? FileStore.openReadOnly(p) : FileStore.open(p);
                stores.add(fs);
                served.put(en.getKey(), new Export(fs, sharedWrite, readOnly));
            }
            try {
                server = NbdServer.start(addr, served, tls);
            } catch (BindException e) {
                throw new Mirrorctl.Failure(Mirrorctl.IO, e.getMessage() + "; pick another port with --listen, or stop what holds it");
            }
            if (!quiet) server.logTo(line -> System.err.println("gateway: " + line));
            String host = addr.getAddress().getHostAddress();
            String hostPart = host.indexOf(':') >= 0 ? "[" + host + "]" : host;
            for (Map.Entry<String, Export> en : served.entrySet()) {
                System.out.println("serving " + (tls != null ? "nbds://" : "nbd://") + hostPart + ":" + server.port() + "/" + en.getKey() + " <- "
                        + paths.get(en.getKey()) + " (" + en.getValue().store().size() + " bytes"
                        + (readOnly ? ", read-only" : sharedWrite ? ", shared write" : ", one writer at a time")
                        + (tls != null ? ", TLS with client certificates" : "") + ")");
            }
            System.out.flush();
            CountDownLatch stopped = new CountDownLatch(1);
            NbdServer srv = server;
            Thread hook = new Thread(() -> {
                srv.close();
                for (Store s : stores) {
                    try {
                        s.flush();
                        s.close();
                    } catch (IOException ignored) {
                    }
                }
                stopped.countDown();
            }, "gateway-stop");
            Runtime.getRuntime().addShutdownHook(hook);
            stopped.await(); // SIGTERM / SIGINT run the hook; the JVM exits after it
            return Mirrorctl.OK;
        } catch (Exception e) {
            if (server != null) server.close();
            for (Store s : stores) {
                try {
                    s.close();
                } catch (IOException ignored) {
                }
            }
            throw e;
        }
    }
}
