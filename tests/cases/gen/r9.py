# Generates tests/cases/r9-derived.yaml (project cases for derived holdings, R9).
# Regenerate: python3 tests/cases/gen/r9.py (needs PyYAML; writes
# tests/cases/r9-derived.yaml next to this directory), review the diff, then
# run `sodguard test tests/cases`.
import os, yaml, copy
RBAC='rbac.authorization.k8s.io'
def policy(derived=None, name='secret-admin-vs-use', actions=None, kinds=None):
    spec={'duties':[
        {'name':'secret-admin','permissions':[{'apiGroups':[''],'resources':['secrets'],'verbs':['create','update','patch','delete','deletecollection']}]},
        {'name':'secret-use','permissions':[{'apiGroups':[''],'resources':['secrets'],'verbs':['get','list','watch']}]}]}
    if derived is not None: spec['derived']=derived
    if actions: spec['validationActions']=actions
    if kinds: spec['subjects']={'kinds':kinds}
    return {'apiVersion':'sodguard.io/v1alpha1','kind':'SoDPolicy','metadata':{'name':name},'spec':spec}
def ns(n): return {'apiVersion':'v1','kind':'Namespace','metadata':{'name':n}}
def sa(n,name): return {'apiVersion':'v1','kind':'ServiceAccount','metadata':{'name':name,'namespace':n}}
def rule(verbs,res,groups=('',),names=None):
    r={'apiGroups':list(groups),'resources':list(res),'verbs':list(verbs)}
    if names: r['resourceNames']=list(names)
    return r
def role(n,name,*rules):
    return {'apiVersion':RBAC+'/v1','kind':'Role','metadata':{'name':name,'namespace':n},'rules':list(rules)}
def crole(name,*rules):
    return {'apiVersion':RBAC+'/v1','kind':'ClusterRole','metadata':{'name':name},'rules':list(rules)}
def subj(s):
    k,rest=s.split(':',1)
    if k=='sa':
        n,name=rest.split('/'); return {'kind':'ServiceAccount','name':name,'namespace':n}
    return {'kind':{'user':'User','group':'Group'}[k],'name':rest,'apiGroup':RBAC}
def rb(n,name,rolekind,rolename,*subjects):
    return {'apiVersion':RBAC+'/v1','kind':'RoleBinding','metadata':{'name':name,'namespace':n},
            'roleRef':{'apiGroup':RBAC,'kind':rolekind,'name':rolename},'subjects':[subj(s) for s in subjects]}
def crb(name,rolename,*subjects):
    return {'apiVersion':RBAC+'/v1','kind':'ClusterRoleBinding','metadata':{'name':name},
            'roleRef':{'apiGroup':RBAC,'kind':'ClusterRole','name':rolename},'subjects':[subj(s) for s in subjects]}
WRITE=rule(['create','update'],['secrets'])
READ=rule(['get','list'],['secrets'])
def v(subject,nsn='a'):
    return {'policy':'secret-admin-vs-use','subject':subject,'namespace':nsn,'duties':['secret-admin','secret-use']}
# base: namespace a; SA x writes secrets; SA backup reads secrets.
def base(extra_sas=()):
    return [ns('a'),sa('a','x'),sa('a','backup'),
            role('a','writer',WRITE), rb('a','x-writes','Role','writer','sa:a/x'),
            role('a','reader',READ), rb('a','backup-reads','Role','reader','sa:a/backup')] + [sa('a',s) for s in extra_sas]
cases=[]
def case(name, rules, objects, violations, request=None, allowed=None, derived=None, pol=None):
    c={'apiVersion':'sodguard.io/v1alpha1','kind':'SoDTestCase','name':name,'rules':rules,
       'objects':[pol or policy(derived)]+objects}
    if request: c['request']=request
    c['expect']={}
    if allowed is not None: c['expect']['allowed']=allowed
    c['expect']['violations']=violations
    cases.append(c)
X='ServiceAccount:a:x'
# --- each derivation kind, namespace scope
for nm, r in [
    ('workload-creation-through-a-statefulset', rule(['patch'],['statefulsets'],['apps'])),
    ('workload-creation-through-a-cronjob', rule(['create'],['cronjobs'],['batch'])),
    ('workload-creation-through-a-replicationcontroller', rule(['update'],['replicationcontrollers'])),
    ('pod-exec-acts-as-every-serviceaccount', rule(['create'],['pods/exec'])),
    ('pod-attach-acts-as-every-serviceaccount', rule(['create'],['pods/attach'])),
    ('ephemeral-containers-act-as-every-serviceaccount', rule(['patch'],['pods/ephemeralcontainers'])),
    ('token-request-for-all-acts-as-every-serviceaccount', rule(['create'],['serviceaccounts/token'])),
    ('impersonating-every-serviceaccount-of-the-namespace', rule(['impersonate'],['serviceaccounts'])),
    ('wildcard-rule-opens-every-path', rule(['*'],['*'],['*'])),
]:
    case(nm,['R9.1'], base()+[role('a','power',r), rb('a','x-power','Role','power','sa:a/x')], [v(X)])
# pods/exec does not count as a workload: exec alone does not mount secrets, so x (writer) with exec and no reader SA around holds only admin
case('pod-exec-does-not-mount-secrets',['R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('a','power',rule(['create'],['pods/exec'])),rb('a','x-power','Role','power','sa:a/x')],[])
# get pods/exec is not create
case('get-on-pods-exec-is-no-path',['R9.1'], base()+[role('a','power',rule(['get'],['pods/exec'])), rb('a','x-power','Role','power','sa:a/x')], [])
# --- resourceNames forms
case('token-request-for-another-name-is-no-path',['R9.1','R3.3'], base(['other'])+[role('a','power',rule(['create'],['serviceaccounts/token'],names=['other'])), rb('a','x-power','Role','power','sa:a/x')], [])
case('token-request-names-the-target',['R9.1','R3.3'], base(['other'])+[role('a','power',rule(['create'],['serviceaccounts/token'],names=['other','backup'])), rb('a','x-power','Role','power','sa:a/x')], [v(X)])
case('impersonating-a-serviceaccount-by-name-only-in-the-namespace',['R9.1'],
     base()+[ns('b'),sa('b','backup'),role('b','reader',READ),rb('b','backup-reads','Role','reader','sa:b/backup'),
             # x may impersonate "backup" in namespace c only: neither a/backup nor b/backup
             ns('c'),role('c','power',rule(['impersonate'],['serviceaccounts'],names=['backup'])), rb('c','x-power','Role','power','sa:a/x')],[])
case('impersonating-a-serviceaccount-by-name-cluster-wide',['R9.1'],
     [ns('a'),ns('b'),sa('a','x'),sa('b','backup'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('b','reader',READ),rb('b','backup-reads','Role','reader','sa:b/backup'),
      crole('power',rule(['impersonate'],['serviceaccounts'],names=['backup'])),crb('x-power','power','sa:a/x')],
     # x holds secret-admin in a; through b/backup it holds secret-use in b: no namespace holds both
     [])
case('impersonating-a-serviceaccount-by-name-cluster-wide-reaches-its-clusterwide-holdings',['R9.1'],
     [ns('a'),ns('b'),sa('a','x'),sa('b','backup'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      crole('reader',READ),crb('backup-reads','reader','sa:b/backup'),
      crole('power',rule(['impersonate'],['serviceaccounts'],names=['backup'])),crb('x-power','power','sa:a/x')],
     [v(X)])
# users and groups: only cluster-wide
case('impersonating-users-in-a-role-is-no-path',['R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      crole('reader',READ),crb('bob-reads','reader','user:bob'),
      role('a','power',rule(['impersonate'],['users'])),rb('a','x-power','Role','power','sa:a/x')],[])
case('impersonating-a-user-cluster-wide',['R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      crole('reader',READ),crb('bob-reads','reader','user:bob'),
      crole('power',rule(['impersonate'],['users'],names=['bob'])),crb('x-power','power','sa:a/x')],[v(X)])
case('impersonating-another-user-is-no-path',['R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      crole('reader',READ),crb('bob-reads','reader','user:bob'),
      crole('power',rule(['impersonate'],['users'],names=['alice'])),crb('x-power','power','sa:a/x')],[])
case('impersonating-a-group-acts-as-it',['R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      crole('reader',READ),crb('ops-reads','reader','group:ops'),
      crole('power',rule(['impersonate'],['groups'],names=['ops'])),crb('x-power','power','sa:a/x')],[v(X)])
case('impersonating-system-masters-holds-every-duty',['R9.1'],
     [ns('a'),sa('a','x'),crole('power',rule(['impersonate'],['groups'],names=['system:masters'])),crb('x-power','power','sa:a/x')],[v(X,'*')])
case('impersonating-any-group-holds-every-duty',['R9.1'],
     [ns('a'),sa('a','x'),crole('power',rule(['impersonate'],['groups'])),crb('x-power','power','sa:a/x')],[v(X,'*')])
# --- cluster scope of workload creation: acts as every SA of every namespace; mounts secrets everywhere
case('clusterwide-workload-creation-acts-as-every-serviceaccount',['R9.1','R4.3'],
     [ns('a'),ns('b'),sa('a','x'),sa('b','backup'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      crole('pods',rule(['create'],['pods'])),crb('x-pods','pods','sa:a/x')],
     # mounts give secret-use cluster-wide; admin in a
     [v(X)])
case('workload-creation-in-another-namespace-reaches-its-serviceaccounts-only',['R9.1'],
     [ns('a'),ns('b'),sa('a','x'),sa('b','w'),role('b','writer',WRITE),rb('b','w-writes','Role','writer','sa:b/w'),
      role('a','pods',rule(['create'],['pods'])),rb('a','x-pods','Role','pods','sa:a/x')],
     # x reads secrets of a (mount), acts as SAs of a only: nothing of b/w
     [])
# --- RoleGrant
case('bind-without-create-rolebindings-is-no-path',['R9.1'],
     base()+[crole('reader-c',READ),role('a','power',rule(['bind'],['clusterroles'],[RBAC])),rb('a','x-power','Role','power','sa:a/x')],[])
case('bind-any-role-of-the-namespace',['R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),role('a','reader',READ),
      role('a','power',rule(['bind'],['roles'],[RBAC]),rule(['create'],['rolebindings'],[RBAC])),rb('a','x-power','Role','power','sa:a/x')],[v(X)])
case('bind-a-named-role-that-grants-nothing-relevant',['R9.1','R3.3'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),role('a','reader',READ),role('a','cm',rule(['get'],['configmaps'])),
      role('a','power',rule(['bind'],['roles'],[RBAC],names=['cm']),rule(['create'],['rolebindings'],[RBAC])),rb('a','x-power','Role','power','sa:a/x')],[])
case('bind-clusterwide-with-create-clusterrolebindings',['R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),crole('reader',READ),
      crole('power',rule(['bind'],['clusterroles'],[RBAC],names=['reader']),rule(['create'],['clusterrolebindings'],[RBAC])),crb('x-power','power','sa:a/x')],[v(X)])
case('create-clusterrolebindings-in-a-role-is-no-path',['R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),crole('reader',READ),
      role('a','power',rule(['bind'],['clusterroles'],[RBAC],names=['reader']),rule(['create'],['clusterrolebindings'],[RBAC])),rb('a','x-power','Role','power','sa:a/x')],[])
case('escalate-with-update-roles-holds-every-duty',['R9.1'],
     [ns('a'),sa('a','x'),role('a','power',rule(['escalate','update'],['roles'],[RBAC])),rb('a','x-power','Role','power','sa:a/x')],[v(X)])
case('escalate-without-writing-roles-is-no-path',['R9.1'],
     [ns('a'),sa('a','x'),role('a','power',rule(['escalate','get'],['roles'],[RBAC])),rb('a','x-power','Role','power','sa:a/x')],[])
case('bound-role-opens-further-paths',['R9.1'],
     # x can bind "pods" (create pods) in a: so it runs as backup and mounts secrets
     base()+[role('a','pods',rule(['create'],['pods'])),
             role('a','power',rule(['bind'],['roles'],[RBAC],names=['pods']),rule(['create'],['rolebindings'],[RBAC])),rb('a','x-power','Role','power','sa:a/x')],[v(X)])
# --- transitive chain and cycles
case('transitive-chain-of-acts-as',['R9.1'],
     [ns('a'),ns('b'),ns('c'),sa('a','x'),sa('b','mid'),sa('c','backup'),
      role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('a','mint',rule(['create'],['serviceaccounts/token'],names=['mid'])),  # in a: does not reach b/mid
      role('b','mint',rule(['create'],['serviceaccounts/token'],names=['mid'])),rb('b','x-mints','Role','mint','sa:a/x'),
      role('c','exec',rule(['create'],['pods/exec'])),rb('c','mid-execs','Role','exec','sa:b/mid'),
      crole('reader',READ),crb('backup-reads','reader','sa:c/backup')],[v(X)])
case('cycle-of-acts-as-edges-ends',['R9.1'],
     [ns('a'),sa('a','x'),sa('a','peer'),
      role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('a','pods',rule(['create'],['pods/exec'])),rb('a','both-exec','Role','pods','sa:a/x','sa:a/peer')],
     # x and y act as each other; no one reads secrets
     [])
case('cycle-with-a-reader',['R9.1'],
     [ns('a'),sa('a','x'),sa('a','peer'),
      role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('a','reader',READ),rb('a','y-reads','Role','reader','sa:a/peer'),
      role('a','exec',rule(['create'],['pods/exec'])),rb('a','both-exec','Role','exec','sa:a/x','sa:a/peer')],
     [v(X),v('ServiceAccount:a:peer')])
# --- derived: []
case('derivation-off-sees-only-rules',['R9.2'], base()+[role('a','power',rule(['create'],['pods'])), rb('a','x-power','Role','power','sa:a/x')], [], derived=[])
case('derivation-limited-to-one-kind',['R9.2'], base()+[role('a','power',rule(['create'],['pods/exec'])), rb('a','x-power','Role','power','sa:a/x')], [], derived=['TokenRequest'])
# --- admission (R9.4)
rq=lambda obj,op='CREATE': {'operation':op,'userInfo':{'username':'alice','groups':['system:authenticated']},'object':obj}
case('binding-to-a-role-that-only-creates-pods-is-denied',['R9.4','R7.1'],
     [ns('a'),sa('a','backup'),sa('a','ci'),
      role('a','writer',WRITE),rb('a','backup-writes','Role','writer','sa:a/backup'),
      role('a','reader',READ),rb('a','ci-reads','Role','reader','sa:a/ci'),
      role('a','pods',rule(['create'],['pods']))],
     [v('ServiceAccount:a:ci')], request=rq(rb('a','ci-pods','Role','pods','sa:a/ci')), allowed=False)
case('role-update-that-grants-create-pods-is-denied',['R9.4','R7.1'],
     [ns('a'),sa('a','backup'),sa('a','ci'),
      role('a','writer',WRITE),rb('a','backup-writes','Role','writer','sa:a/backup'),
      role('a','reader',READ),rb('a','ci-reads','Role','reader','sa:a/ci'),
      role('a','ci-extra',rule(['get'],['configmaps'])),rb('a','ci-extra','Role','ci-extra','sa:a/ci')],
     [v('ServiceAccount:a:ci')], request=rq(role('a','ci-extra',rule(['get'],['configmaps']),rule(['create'],['deployments'],['apps'])),'UPDATE'), allowed=False)
case('binding-a-duty-to-an-acted-as-serviceaccount-is-denied',['R9.4'],
     [ns('a'),sa('a','backup'),sa('a','ci'),
      role('a','reader',READ),rb('a','ci-reads','Role','reader','sa:a/ci'),
      role('a','mint',rule(['create'],['serviceaccounts/token'],names=['backup'])),rb('a','ci-mints','Role','mint','sa:a/ci'),
      role('a','writer',WRITE)],
     [v('ServiceAccount:a:ci')], request=rq(rb('a','backup-writes','Role','writer','sa:a/backup')), allowed=False)
case('binding-a-duty-to-someone-a-clusterwide-pod-creator-runs-as-is-denied',['R9.4'],
     [ns('a'),ns('b'),sa('a','backup'),sa('b','ci'),
      role('b','reader',READ),rb('b','ci-reads','Role','reader','sa:b/ci'),
      crole('pods',rule(['create'],['pods'])),crb('ci-pods','pods','sa:b/ci'),
      crole('writer',WRITE)],
     # ci mounts secrets everywhere (use, cluster-wide), runs as a/backup who now writes secrets in a
     [v('ServiceAccount:b:ci','a')], request=rq(rb('a','backup-writes','ClusterRole','writer','sa:a/backup')), allowed=False)
case('binding-a-duty-through-a-chain-is-denied',['R9.4','R9.1'],
     [ns('a'),sa('a','x'),sa('a','mid'),sa('a','backup'),
      role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('a','mint-mid',rule(['create'],['serviceaccounts/token'],names=['mid'])),rb('a','x-mints','Role','mint-mid','sa:a/x'),
      role('a','mint-backup',rule(['create'],['serviceaccounts/token'],names=['backup'])),rb('a','mid-mints','Role','mint-backup','sa:a/mid'),
      role('a','reader',READ)],
     [v(X)], request=rq(rb('a','backup-reads','Role','reader','sa:a/backup')), allowed=False)
case('binding-a-bindable-role-a-duty-is-denied',['R9.4','R9.1'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('a','cm',rule(['get'],['configmaps'])),
      role('a','power',rule(['bind'],['roles'],[RBAC],names=['cm']),rule(['create'],['rolebindings'],[RBAC])),rb('a','x-power','Role','power','sa:a/x')],
     [v(X)], request=rq(role('a','cm',rule(['get'],['configmaps']),READ),'UPDATE'), allowed=False)
case('serviceaccount-creation-without-derivation-is-allowed',['R9.4','R9.2'],
     [ns('a'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('a','pods',rule(['create'],['pods/exec'])),rb('a','x-pods','Role','pods','sa:a/x'),
      role('a','reader',READ),rb('a','backup-reads','Role','reader','sa:a/backup')],
     [], request=rq(sa('a','backup')), allowed=True, derived=[])
case('serviceaccount-creation-elsewhere-is-allowed',['R9.4'],
     [ns('a'),ns('b'),sa('a','x'),role('a','writer',WRITE),rb('a','x-writes','Role','writer','sa:a/x'),
      role('a','pods',rule(['create'],['pods/exec'])),rb('a','x-pods','Role','pods','sa:a/x'),
      role('b','reader',READ),rb('b','backup-reads','Role','reader','sa:b/backup')],
     [], request=rq(sa('b','backup')), allowed=True)
class D(yaml.SafeDumper):
    def ignore_aliases(self, data): return True
out=open(os.path.join(os.path.dirname(os.path.abspath(__file__)),'..','r9-derived.yaml'),'w')
out.write("# Derived holdings (R9): every escalation path, namespace and cluster scope,\n# resourceNames as targets, transitive chains and cycles, derived: [], and\n# admission through acts-as edges (R9.4).\n")
yaml.dump_all(cases,out,Dumper=D,sort_keys=False,default_flow_style=None,width=120)
print(len(cases))
