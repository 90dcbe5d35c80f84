package org.ublkmirror.cli;

import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.mirror.RecoveryReport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "reconcile", description = {"Offline crash repair: compare the legs' tag tables and copy the blocks of writes that reached only one side (primary to secondary).",
        "After power loss (another boot) the intent record's regions are repaired too. 'mirrorctl start' does the same before the device appears."})
final class ReconcileCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--json", description = "Machine-readable output.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        MirrorConfig cfg = common.load(name);
        if (Control.running(cfg.name())) {
            throw new Mirrorctl.Failure(Mirrorctl.STATE, "mirror '" + name + "' is running; its daemon reconciled at start (see 'mirrorctl status')");
        }
        Mirror.Options o = new Mirror.Options();
        o.allowMissingSecondary = false;
        RecoveryReport r;
        try (Mirror m = Mirror.open(cfg, o)) {
            r = m.recovery();
        }
        if (json) {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("cause", r.cause());
            out.put("live_tags_primary", r.liveTagsPrimary());
            out.put("live_tags_secondary", r.liveTagsSecondary());
            out.put("intent_regions", r.intentRegions());
            out.put("blocks_repaired", r.blocksRepaired());
            out.put("blocks_left_dirty", r.blocksMarkedDirty());
            System.out.println(Json.write(out));
        } else {
            System.out.println(r.summary());
        }
        return 0;
    }
}
