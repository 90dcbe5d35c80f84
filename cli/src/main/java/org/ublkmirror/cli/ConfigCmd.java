package org.ublkmirror.cli;

import org.ublkmirror.link.LinkConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "config", description = {"Show or change how the mirror watches its secondary and what it does when it returns",
        "(resync policy, timeouts, reconnect backoff). A running daemon takes the change at once; a new --io-timeout",
        "or --connect-timeout applies from the next connection to the gateway."})
final class ConfigCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Mixin
    LinkOptions link;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--json", description = "Machine-readable output.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        common.load(name);
        LinkConfig cur = LinkConfig.load(common.confDir(), name);
        LinkConfig next = link.apply(cur); // validates everything before anything is written
        boolean live = false;
        if (link.any()) {
            next.save(common.confDir(), name);
            if (Control.running(name)) {
                Map<String, Object> req = new LinkedHashMap<>(next.toMap());
                req.put("verb", "config");
                Control.call(name, req, null);
                live = true;
            }
        }
        Map<String, Object> m = next.toMap();
        if (json) {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("name", name);
            out.put("link", m);
            out.put("changed", link.any());
            out.put("applied_to_daemon", live);
            System.out.println(Json.write(out));
            return 0;
        }
        System.out.printf("%s: resync policy %s; io-timeout %s ms, connect-timeout %s ms, heartbeat %s ms, retry %s..%s ms, resync rate %s, resync window %d (%s)%n",
                name, m.get("resync_policy"), m.get("io_timeout_ms"), m.get("connect_timeout_ms"), m.get("heartbeat_ms"),
                m.get("retry_min_ms"), m.get("retry_max_ms"), next.resyncRate() == 0 ? "unlimited" : Units.human(next.resyncRate()) + "/s",
                next.resyncWindow(), next.resyncWindowMode());
        if (link.any()) System.out.println(live ? "  saved; the running daemon uses it now" : "  saved; used from the next 'mirrorctl start'");
        return 0;
    }
}
