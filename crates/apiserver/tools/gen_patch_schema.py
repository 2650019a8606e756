"""Derive weft's strategic-merge / server-side-apply field table from kubernetes/api types.go struct tags.

Usage: for each GROUP in the GROUPS table below, save kubernetes/api's GROUP/v1/types.go as GROUP.go, then
    python3 gen_patch_schema.py core.go apps.go ... node.go
prints the FIELDS and KINDS tables that crates/apiserver/src/patch/schema.rs holds between its header and its tests.
"""
import re, sys

GROUPS = {"core": "", "apps": "apps", "batch": "batch", "networking": "networking.k8s.io",
          "discovery": "discovery.k8s.io", "rbac": "rbac.authorization.k8s.io", "policy": "policy",
          "autoscaling": "autoscaling", "coordination": "coordination.k8s.io", "storage": "storage.k8s.io",
          "scheduling": "scheduling.k8s.io", "events": "events.k8s.io", "certificates": "certificates.k8s.io",
          "admissionregistration": "admissionregistration.k8s.io", "node": "node.k8s.io"}

structs = {}   # name -> list of (json, type, strategy, mergekey, markers)
kinds = []     # (group, kind)
for fn in sys.argv[1:]:
    grp = GROUPS[fn.split('/')[-1][:-3]]
    cur = None; comments = []
    for line in open(fn):
        s = line.strip()
        m = re.match(r'type (\w+) struct \{', s)
        if m:
            cur = m.group(1); structs[cur] = []; comments = []; continue
        if cur and s == '}':
            f = structs[cur]
            if any(x[0] == 'metadata' and x[1] == 'metav1.ObjectMeta' for x in f) and ('<inline>', 'metav1.TypeMeta', None, None, []) in f:
                kinds.append((grp, cur))
            cur = None; continue
        if not cur: continue
        if s.startswith('//'): comments.append(s[2:].strip()); continue
        m = re.match(r'(\w+)\s+([\[\]\*\w\.]+)\s+`json:"([^,"]*)[^`]*`', s)
        if m:
            _, ty, js = m.groups()
            ps = re.search(r'patchStrategy:"([^"]*)"', s); pk = re.search(r'patchMergeKey:"([^"]*)"', s)
            mk = [c[1:] for c in comments if c.startswith(('+listType', '+listMapKey', '+mapType'))]
            structs[cur].append((js, ty, ps.group(1) if ps else None, pk.group(1) if pk else None, mk))
        elif re.match(r'[\w\.]+\s+`json:"', s):
            js = re.search(r'json:"([^,"]*)', s).group(1)
            structs[cur].append((js or '<inline>', s.split()[0], None, None, []))
        comments = []

# metav1 types the files above refer to
structs['ObjectMeta'] = [('finalizers', '[]string', 'merge', None, ['listType=set']),
                         ('ownerReferences', '[]OwnerReference', 'merge', 'uid', ['listType=map', 'listMapKey=uid']),
                         ('managedFields', '[]ManagedFieldsEntry', None, None, ['listType=atomic'])]

def base(t):
    if t.startswith('map['): return None
    t = t.lstrip('[]*')
    return t.split('.')[-1]

def fields(name, seen=()):
    out = []
    for f in structs.get(name, []):
        if f[0] == '<inline>':
            b = base(f[1])
            if b and b not in seen: out += fields(b, seen + (b,))
        elif f[0] and f[0] != '-':
            out.append(f)
    return out

def own_info(f):
    js, ty, ps, pk, mk = f
    strategy = ''
    if ps:
        parts = [p for p in ps.split(',') if p != 'retainKeys']
        strategy = parts[0] if parts else ''
    lt = next((m.split('=')[1] for m in mk if m.startswith('listType=')), None)
    keys = [m.split('=')[1] for m in mk if m.startswith('listMapKey=')]
    if lt is None and strategy == 'merge' and ty.startswith('[]'):
        lt = 'map' if pk else 'set'
        keys = [pk] if pk else []
    atomic_map = any(m == 'mapType=atomic' for m in mk) or strategy == 'replace'
    return strategy, pk or '', lt, keys, atomic_map

interesting = {}
def is_interesting(name, stack=()):
    if name in interesting: return interesting[name]
    if name in stack or name not in structs: return False
    r = False
    for f in fields(name):
        s, _, lt, _, am = own_info(f)
        b = base(f[1])
        if s or lt in ('map', 'set') or am or (b and is_interesting(b, stack + (name,))): r = True
    interesting[name] = r
    return r

rows = []
for name in sorted(structs):
    if not is_interesting(name): continue
    for f in fields(name):
        s, pk, lt, keys, am = own_info(f)
        b = base(f[1])
        child = b if b and is_interesting(b) else ''
        if not (s or lt in ('map', 'set') or am or child): continue
        if f[0] == 'metadata' or (name.endswith('List') and f[0] == 'items'): continue
        lst = {'map': 'Shape::Keyed(&[%s])' % ', '.join('"%s"' % k for k in keys), 'set': 'Shape::Set'}.get(lt, 'Shape::AtomicList')
        smp = {'merge': 'Smp::Merge("%s")' % pk, 'replace': 'Smp::Replace'}.get(s, 'Smp::None')
        shape = 'Shape::AtomicMap' if am else (lst if f[1].startswith('[]') else 'Shape::Struct')
        rows.append('    f("%s", "%s", "%s", %s, %s),' % (name, f[0], child, smp, shape))

rows.sort()
print('// Generated from the `patchStrategy`/`patchMergeKey` tags and `+listType`/`+listMapKey`/`+mapType` markers of')
print('// kubernetes/api types.go (core, apps, batch, networking, discovery, rbac, policy, autoscaling, coordination,')
print('// storage, scheduling, events, certificates, admissionregistration, node; metav1.ObjectMeta by hand): only the')
print('// fields that carry such facts or lead to a type that does. Sorted by (type, field) for binary search.')
print('pub(super) const FIELDS: &[Field] = &[')
print('\n'.join(rows))
print('];\n')
print('/// Built-in kinds: (group, kind); each kind\'s Go type has the kind\'s name.')
print('pub(super) const KINDS: &[(&str, &str)] = &[')
kinds.append(('apiextensions.k8s.io', 'CustomResourceDefinition'))
for g, k in sorted(set(kinds)):
    print('    ("%s", "%s"),' % (g, k))
print('];')
