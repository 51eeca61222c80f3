"""invoke tasks: the operator's menu (`./iot --list`). Thin on purpose; the logic lives in ops/.

One module per group of tasks: dev (tests, lint, api, simulate, bench, engine), stack (Compose: render,
build, up, down, logs, ps, autotest, images.*), publish (tag, push, registry.*), swarm (deploy,
undeploy, rollback, status, scale, swarm.*), cluster (cluster.*), db (db.*). Every task echoes its commands;
`./iot --dry TASK` prints them without running anything.
"""
from invoke import Collection

from . import cluster, db, deps, dev, publish, show, stack, swarm

ns = Collection(dev.test, dev.lint, dev.api, dev.simulate, dev.bench, dev.engine,
                stack.render, stack.build, stack.up, stack.down, stack.logs, stack.ps, stack.autotest, stack.images_ns,
                publish.tag, publish.push, publish.registry_ns,
                swarm.deploy, swarm.undeploy, swarm.rollback, swarm.status, swarm.scale, swarm.swarm_ns,
                cluster.cluster_ns, db.db_ns, show.show, deps.deps_ns)
# Defaults, overridable the pyinvoke way: invoke.yaml (`iot: {env: prod}`) or INVOKE_IOT_ENV=prod.
ns.configure({"run": {"echo": True}, "iot": {"env": "dev", "autotest_env": "test"}})
