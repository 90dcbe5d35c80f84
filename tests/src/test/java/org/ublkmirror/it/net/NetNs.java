package org.ublkmirror.it.net;

import org.ublkmirror.it.fuse.Root;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Two network namespaces made by the test, joined by a veth pair on a private /30: the mirror
 * daemon's side ("client", 10.213.N.1) and the gateway's side ("gateway", 10.213.N.2). Both ends
 * live in namespaces of their own, so nothing on the host's interfaces or routes changes (the
 * addresses exist only inside them). {@link #close()} deletes both namespaces, and with them the
 * veth pair, qdiscs and nftables rules; call it in a finally, after killing what runs inside.
 *
 * <p>Impairments, on the gateway's end (its veth, its nftables):
 * <ul>
 * <li>{@link #cut()} / {@link #restore()}: {@code ip link set VETH down|up} (the peer sees no carrier:
 *     every packet in both directions is dropped, no RST, no FIN: a cable pulled);</li>
 * <li>{@link #impair(int, int, int)}: loss, delay and rate. With sch_netem in the kernel: {@code tc qdisc
 *     netem delay D loss L% rate R} on both ends. Without it (this project's CI kernel has no netem):
 *     loss by nftables in the gateway's namespace ({@code numgen random mod 100 < L drop}, on input
 *     and output of the NBD port, so each direction loses L%), and rate by {@code tc tbf} on both
 *     ends (rate R, queue bounded to {@code latency D}, which adds up to D of queueing delay under
 *     load); a fixed per-packet delay cannot be made without netem and is not emulated then.
 *     {@link #impairment()} says which was used.</li>
 * </ul>
 * Processes run inside with {@link #inClient}/{@link #inGateway}: {@code nsenter --net=...}, which
 * changes only the network namespace (not the mount namespace, as {@code ip netns exec} would),
 * so the daemon's FUSE mount and loop device are visible to the test as usual.
 */
public final class NetNs implements AutoCloseable {
    public static final int NBD_PORT = 10809;
    public final String client, gateway, clientIf, gatewayIf, clientAddr, gatewayAddr;
    private final List<String> made = new ArrayList<>();
    private String impairment = "none";

    private NetNs() {
        String id = Integer.toHexString(ThreadLocalRandom.current().nextInt(1 << 20, 1 << 24));
        client = "umc-" + id;
        gateway = "umg-" + id;
        clientIf = "umc" + id;
        gatewayIf = "umg" + id;
        int n = ThreadLocalRandom.current().nextInt(256);
        clientAddr = "10.213." + n + ".1";
        gatewayAddr = "10.213." + n + ".2";
    }

    /** Fails loudly when ip, tc or nft are missing (make deps installs iproute2 and nftables). */
    public static void require() throws IOException {
        Root.require("ip", "tc", "nft", "nsenter");
    }

    public static NetNs create() throws IOException, InterruptedException {
        require();
        NetNs n = new NetNs();
        try {
            n.sh("ip", "netns", "add", n.client);
            n.made.add(n.client);
            n.sh("ip", "netns", "add", n.gateway);
            n.made.add(n.gateway);
            // made inside the client namespace, the peer moved: the host never sees either end
            n.sh("ip", "-n", n.client, "link", "add", n.clientIf, "type", "veth", "peer", "name", n.gatewayIf, "netns", n.gateway);
            n.sh("ip", "-n", n.client, "addr", "add", n.clientAddr + "/30", "dev", n.clientIf);
            n.sh("ip", "-n", n.gateway, "addr", "add", n.gatewayAddr + "/30", "dev", n.gatewayIf);
            for (String[] ns : new String[][] {{n.client, n.clientIf}, {n.gateway, n.gatewayIf}}) {
                n.sh("ip", "-n", ns[0], "link", "set", "lo", "up");
                n.sh("ip", "-n", ns[0], "link", "set", ns[1], "up");
            }
            return n;
        } catch (IOException | InterruptedException | RuntimeException | AssertionError e) {
            n.close();
            throw e;
        }
    }

    private String sh(String... cmd) throws IOException, InterruptedException {
        Root.Result r = Root.run(60, cmd);
        assertEquals(0, r.exit(), () -> String.join(" ", cmd) + " failed:\n" + r.out());
        return r.out();
    }

    /** A command line run in the client's (the daemon's) network namespace. */
    public List<String> inClient(List<String> cmd) {
        return in(client, cmd);
    }

    public List<String> inGateway(List<String> cmd) {
        return in(gateway, cmd);
    }

    private static List<String> in(String ns, List<String> cmd) {
        List<String> l = new ArrayList<>(List.of("nsenter", "--net=/run/netns/" + ns, "--"));
        l.addAll(cmd);
        return l;
    }

    public String nbdUrl(String export) {
        return "nbd://" + gatewayAddr + ":" + NBD_PORT + "/" + export;
    }

    /** Pulls the cable: the gateway's end goes down. */
    public void cut() throws IOException, InterruptedException {
        sh("ip", "-n", gateway, "link", "set", gatewayIf, "down");
    }

    public void restore() throws IOException, InterruptedException {
        sh("ip", "-n", gateway, "link", "set", gatewayIf, "up");
    }

    /**
     * A black hole in front of the gateway: every packet to its NBD port is dropped in its
     * namespace (nftables), no RST, no answer: a connect times out, an open connection goes
     * silent. {@code false} removes it.
     */
    public void blackHole(boolean on) throws IOException, InterruptedException {
        if (!on) {
            Root.run(30, "ip", "netns", "exec", gateway, "nft", "delete", "table", "inet", "umhole");
            return;
        }
        java.nio.file.Path f = java.nio.file.Files.createTempFile("umhole", ".nft");
        try {
            java.nio.file.Files.writeString(f, "table inet umhole {\n  chain in { type filter hook input priority -10; policy accept; tcp dport "
                    + NBD_PORT + " drop; }\n}\n");
            sh("ip", "netns", "exec", gateway, "nft", "-f", f.toString());
        } finally {
            java.nio.file.Files.deleteIfExists(f);
        }
    }

    public static boolean kernelHasNetem(String ns, String dev) throws IOException, InterruptedException {
        Root.Result r = Root.run(30, "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms");
        if (r.exit() == 0) {
            Root.run(30, "tc", "-n", ns, "qdisc", "del", "dev", dev, "root");
            return true;
        }
        return false;
    }

    /** Loss (percent, each direction), delay (ms; without netem: the tbf queue bound), rate (Mbit/s, 0: none). */
    public void impair(int lossPercent, int delayMs, int rateMbit) throws IOException, InterruptedException {
        clear();
        if (kernelHasNetem(gateway, gatewayIf)) {
            for (String[] ns : new String[][] {{client, clientIf}, {gateway, gatewayIf}}) {
                List<String> c = new ArrayList<>(List.of("tc", "-n", ns[0], "qdisc", "add", "dev", ns[1], "root", "netem",
                        "delay", delayMs + "ms", "loss", lossPercent + "%"));
                if (rateMbit > 0) c.addAll(List.of("rate", rateMbit + "mbit"));
                sh(c.toArray(String[]::new));
            }
            impairment = "netem on both ends: delay " + delayMs + " ms, loss " + lossPercent + "%" + (rateMbit > 0 ? ", rate " + rateMbit + " Mbit/s" : "");
            return;
        }
        if (lossPercent > 0) {
            String rules = "table inet umtest {\n"
                    + "  chain in { type filter hook input priority 0; policy accept; tcp dport " + NBD_PORT
                    + " numgen random mod 100 < " + lossPercent + " drop; }\n"
                    + "  chain out { type filter hook output priority 0; policy accept; tcp sport " + NBD_PORT
                    + " numgen random mod 100 < " + lossPercent + " drop; }\n}\n";
            java.nio.file.Path f = java.nio.file.Files.createTempFile("umtest", ".nft");
            try {
                java.nio.file.Files.writeString(f, rules);
                sh("ip", "netns", "exec", gateway, "nft", "-f", f.toString());
            } finally {
                java.nio.file.Files.deleteIfExists(f);
            }
        }
        if (rateMbit > 0) tbf(rateMbit, Math.max(delayMs, 1));
        impairment = "no netem in this kernel: loss " + lossPercent + "% each way by nftables numgen drop in the gateway's namespace"
                + (rateMbit > 0 ? "; rate " + rateMbit + " Mbit/s by tbf on both ends with a " + Math.max(delayMs, 1)
                + " ms queue (queueing delay under load, no fixed delay)" : "");
    }

    /** Rate limit by tbf on both ends (the benchmark's link). */
    public void tbf(int rateMbit, int latencyMs) throws IOException, InterruptedException {
        for (String[] ns : new String[][] {{client, clientIf}, {gateway, gatewayIf}}) {
            sh("tc", "-n", ns[0], "qdisc", "replace", "dev", ns[1], "root", "tbf", "rate", rateMbit + "mbit",
                    "burst", Math.max(64, rateMbit) + "kb", "latency", latencyMs + "ms");
        }
    }

    /** Back to a clean link. */
    public void clear() throws IOException, InterruptedException {
        for (String[] ns : new String[][] {{client, clientIf}, {gateway, gatewayIf}}) {
            Root.run(30, "tc", "-n", ns[0], "qdisc", "del", "dev", ns[1], "root"); // none: an error, ignored
        }
        Root.run(30, "ip", "netns", "exec", gateway, "nft", "delete", "table", "inet", "umtest");
        impairment = "none";
    }

    public String impairment() {
        return impairment;
    }

    /** Deletes both namespaces (and so the veth pair and everything set on it). Never throws. */
    @Override
    public void close() {
        for (String ns : made) {
            try {
                Root.Result r = Root.run(60, "ip", "netns", "del", ns);
                if (r.exit() != 0) System.err.println("cleanup: ip netns del " + ns + ": " + r.out());
            } catch (Exception | AssertionError e) {
                System.err.println("cleanup: ip netns del " + ns + ": " + e);
            }
        }
        made.clear();
    }
}
