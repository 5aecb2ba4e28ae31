//! A leaver's clean-up against a real moto server: every credential kind IAM
//! has is created on a managed user outside the connector, the leaver's
//! desired state is applied over gRPC, and both the connector's read-back and
//! the tests' own direct IAM calls show nothing left; deletion then succeeds
//! without `DeleteConflict`. Disabling keeps keys but makes them unusable.

mod support;

use aws_sdk_iam::Client;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::StatusType;
use connector_iam::{KIND_GROUP, KIND_INLINE_POLICY, KIND_POLICY};
use connector_kit::client::{ClientOptions, ConnectorClient};
use connector_kit::contract as pb;
use connector_kit::server::{ConnectorServer, RunningServer};

const INLINE_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#;

struct Setup {
    grpc: ConnectorClient,
    client: Client,
    policy_arn: String,
    ssc_supported: bool,
    _server: RunningServer,
}

async fn setup(label: &str) -> Setup {
    let (connector, client, catalogue) = support::connector(label).await;
    let ssc_supported = !connector.config().target_lacks_service_specific_credentials;
    let server =
        ConnectorServer::new(connector).bind("127.0.0.1:0".parse().expect("address")).await.expect("server binds");
    let grpc = ConnectorClient::connect(&server.endpoint(), ClientOptions::default()).expect("client");
    Setup { grpc, client, policy_arn: support::policy_arn(&catalogue, "lm-staff-read"), ssc_supported, _server: server }
}

fn account(name: &str) -> pb::AccountRef {
    pb::AccountRef { person_id: format!("person-{name}"), account_name: name.into() }
}

fn joiner(account: &pb::AccountRef, policy_arn: &str) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(account.clone()),
        presence: pb::Presence::Present as i32,
        enabled: true,
        attributes: [("display_name".to_string(), "Leaving Person".to_string())].into(),
        entitlements: vec![
            pb::Entitlement { kind: KIND_GROUP.into(), id: "staff".into(), privileged: false },
            pb::Entitlement { kind: KIND_POLICY.into(), id: policy_arn.into(), privileged: false },
        ],
        credentials: pb::CredentialAction::Keep as i32,
        owned_identities: None,
    }
}

fn leaver(account: &pb::AccountRef) -> pb::DesiredAccount {
    pb::DesiredAccount {
        account: Some(account.clone()),
        presence: pb::Presence::Present as i32,
        enabled: false,
        attributes: Default::default(),
        entitlements: vec![],
        credentials: pb::CredentialAction::RevokeAll as i32,
        owned_identities: None,
    }
}

/// Gives `user` one credential of every kind, plus an inline policy, directly
/// on IAM. Answers the virtual MFA serial and whether a service-specific
/// credential was created.
async fn give_every_credential(client: &Client, user: &str, ssc_supported: bool) -> (String, bool) {
    let key = client.create_access_key().user_name(user).send().await.expect("CreateAccessKey");
    let second = client.create_access_key().user_name(user).send().await.expect("CreateAccessKey");
    let second_id = second.access_key().map(|k| k.access_key_id().to_owned()).expect("key id");
    client
        .update_access_key()
        .user_name(user)
        .access_key_id(second_id)
        .status(StatusType::Inactive)
        .send()
        .await
        .expect("UpdateAccessKey");
    assert!(key.access_key().is_some());
    client
        .create_login_profile()
        .user_name(user)
        .password("Correct-Horse-Battery-9")
        .send()
        .await
        .expect("CreateLoginProfile");
    client
        .upload_ssh_public_key()
        .user_name(user)
        .ssh_public_key_body(support::SSH_PUBLIC_KEY)
        .send()
        .await
        .expect("UploadSSHPublicKey");
    client
        .upload_signing_certificate()
        .user_name(user)
        .certificate_body(support::SIGNING_CERTIFICATE)
        .send()
        .await
        .expect("UploadSigningCertificate");
    let created_ssc = match client
        .create_service_specific_credential()
        .user_name(user)
        .service_name("codecommit.amazonaws.com")
        .send()
        .await
    {
        Ok(_) => true,
        Err(error) => {
            // moto has no service-specific credential API; the connector is
            // then configured not to list them (see support::connector).
            assert!(!ssc_supported, "CreateServiceSpecificCredential failed on a target that supports it: {error:?}");
            eprintln!("this moto does not implement service-specific credentials: that kind is not exercised");
            false
        }
    };
    let device = client
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(format!("{user}-mfa"))
        .send()
        .await
        .expect("CreateVirtualMFADevice");
    let serial = device.virtual_mfa_device().map(|d| d.serial_number().to_owned()).expect("serial");
    client
        .enable_mfa_device()
        .user_name(user)
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .expect("EnableMFADevice");
    client
        .put_user_policy()
        .user_name(user)
        .policy_name("ad-hoc-inline")
        .policy_document(INLINE_POLICY)
        .send()
        .await
        .expect("PutUserPolicy");
    (serial, created_ssc)
}

/// What IAM itself shows, asked directly: every credential and grant left.
async fn leftovers(client: &Client, user: &str, serial: &str, ssc_supported: bool) -> Vec<String> {
    let mut left = Vec::new();
    match client.get_login_profile().user_name(user).send().await {
        Ok(_) => left.push("login profile".to_string()),
        Err(error) => assert_eq!(error.code(), Some("NoSuchEntity"), "GetLoginProfile: {error:?}"),
    }
    let keys = client.list_access_keys().user_name(user).send().await.expect("ListAccessKeys");
    left.extend(keys.access_key_metadata().iter().map(|k| format!("access key {:?}", k.access_key_id())));
    let certificates =
        client.list_signing_certificates().user_name(user).send().await.expect("ListSigningCertificates");
    left.extend(certificates.certificates().iter().map(|c| format!("signing certificate {}", c.certificate_id())));
    let ssh = client.list_ssh_public_keys().user_name(user).send().await.expect("ListSSHPublicKeys");
    left.extend(ssh.ssh_public_keys().iter().map(|k| format!("ssh key {}", k.ssh_public_key_id())));
    if ssc_supported {
        let ssc = client
            .list_service_specific_credentials()
            .user_name(user)
            .send()
            .await
            .expect("ListServiceSpecificCredentials");
        left.extend(
            ssc.service_specific_credentials()
                .iter()
                .map(|c| format!("service-specific credential {}", c.service_specific_credential_id())),
        );
    }
    let mfa = client.list_mfa_devices().user_name(user).send().await.expect("ListMFADevices");
    left.extend(mfa.mfa_devices().iter().map(|d| format!("mfa device {}", d.serial_number())));
    let virtual_devices = client.list_virtual_mfa_devices().send().await.expect("ListVirtualMFADevices");
    left.extend(
        virtual_devices
            .virtual_mfa_devices()
            .iter()
            .filter(|d| d.serial_number() == serial)
            .map(|d| format!("virtual mfa device {}", d.serial_number())),
    );
    let inline = client.list_user_policies().user_name(user).send().await.expect("ListUserPolicies");
    left.extend(inline.policy_names().iter().map(|p| format!("inline policy {p}")));
    let attached = client.list_attached_user_policies().user_name(user).send().await.expect("ListAttachedUserPolicies");
    left.extend(attached.attached_policies().iter().map(|p| format!("attached policy {:?}", p.policy_arn())));
    let groups = client.list_groups_for_user().user_name(user).send().await.expect("ListGroupsForUser");
    left.extend(groups.groups().iter().map(|g| format!("group {}", g.group_name())));
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_revokes_every_credential_kind_then_delete_user_succeeds() {
    let setup = setup("leaver").await;
    let account = account(&format!("leaver{:06}", rand::random::<u32>() % 1_000_000));
    let name = account.account_name.clone();
    setup.grpc.apply("joiner-1", joiner(&account, &setup.policy_arn)).await.expect("joiner applied");
    let (serial, created_ssc) = give_every_credential(&setup.client, &name, setup.ssc_supported).await;

    let before = setup.grpc.read(account.clone()).await.expect("read before");
    let credentials = before.credentials.clone().unwrap_or_default();
    let labels = credentials.active.join(" ");
    for kind in ["login_profile", "access_key:", ":inactive", "ssh_public_key:", "signing_certificate:", "mfa_device:"]
    {
        assert!(labels.contains(kind), "read-back before the leaver lacks {kind}: {labels}");
    }
    if created_ssc {
        assert!(labels.contains("service_specific_credential:"), "{labels}");
    }
    assert!(
        before.entitlements.iter().any(|e| e.kind == KIND_INLINE_POLICY && e.id == "ad-hoc-inline" && e.privileged),
        "the inline policy shows as a privileged entitlement: {:?}",
        before.entitlements
    );
    assert!(before.enabled);

    let acknowledgement = setup.grpc.apply("leaver-1", leaver(&account)).await.expect("leaver applied");
    let revoked: Vec<&str> = acknowledgement.changes.iter().map(|c| c.subject.as_str()).collect();
    assert!(revoked.contains(&"login_profile"), "{revoked:?}");
    assert!(revoked.iter().any(|s| s.starts_with("mfa_device:")), "{revoked:?}");

    let after = setup.grpc.read(account.clone()).await.expect("read after");
    let credentials = after.credentials.clone().unwrap_or_default();
    assert!(credentials.active.is_empty(), "read-back shows credentials left: {:?}", credentials.active);
    // Complete where the target has every credential API; moto lacks the
    // service-specific one, which `Describe` then declares unlistable.
    assert_eq!(credentials.complete, setup.ssc_supported, "read-back proves what it can list: {credentials:?}");
    // Session credentials cannot be listed: they are cut off, and the
    // read-back shows the cut-off IAM holds.
    let cut: Vec<&str> = credentials.cutoffs.iter().map(|c| c.credential_kind.as_str()).collect();
    assert_eq!(cut, ["sts_session", "console_session"], "{credentials:?}");
    assert!(credentials.cutoffs.iter().all(|c| c.issued_before.is_some()), "{credentials:?}");
    assert!(after.entitlements.is_empty(), "entitlements left: {:?}", after.entitlements);
    assert!(!after.enabled, "the leaver reads back enabled");
    assert!(after.exists);

    // IAM, asked directly, shows the documented deny-all on
    // aws:TokenIssueTime, and nothing else.
    let cutoff = setup
        .client
        .get_user_policy()
        .user_name(&name)
        .policy_name(connector_iam::target::SESSION_CUTOFF_POLICY)
        .send()
        .await
        .expect("the session cut-off policy is on the user");
    assert!(
        connector_iam::target::parse_session_cutoff(cutoff.policy_document()).is_some(),
        "{}",
        cutoff.policy_document()
    );
    let left = leftovers(&setup.client, &name, &serial, setup.ssc_supported).await;
    let cutoff_listed = format!("inline policy {}", connector_iam::target::SESSION_CUTOFF_POLICY);
    let left: Vec<&String> = left.iter().filter(|l| **l != cutoff_listed).collect();
    assert!(left.is_empty(), "IAM still shows, asked directly: {left:?}");

    let again = setup.grpc.apply("leaver-2", leaver(&account)).await.expect("leaver re-applied");
    assert!(again.changes.is_empty(), "re-applying the leaver changed {:?}", again.changes);

    // Nothing AWS requires to be gone is left but the cut-off, which stays
    // while the user exists: without it, DeleteUser, called directly, succeeds.
    setup
        .client
        .delete_user_policy()
        .user_name(&name)
        .policy_name(connector_iam::target::SESSION_CUTOFF_POLICY)
        .send()
        .await
        .expect("DeleteUserPolicy");
    setup.client.delete_user().user_name(&name).send().await.expect("DeleteUser without DeleteConflict");
    let gone = setup.grpc.read(account).await.expect("read after delete");
    assert!(!gone.exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_with_every_credential_kind_cleans_up_first() {
    let setup = setup("delete").await;
    let account = account(&format!("gone{:06}", rand::random::<u32>() % 1_000_000));
    let name = account.account_name.clone();
    setup.grpc.apply("joiner-1", joiner(&account, &setup.policy_arn)).await.expect("joiner applied");
    let (serial, _) = give_every_credential(&setup.client, &name, setup.ssc_supported).await;

    let absent = pb::DesiredAccount {
        account: Some(account.clone()),
        presence: pb::Presence::Absent as i32,
        credentials: pb::CredentialAction::Keep as i32,
        ..Default::default()
    };
    let acknowledgement = setup.grpc.apply("delete-1", absent.clone()).await.expect("deletion applied");
    let actions: Vec<&str> = acknowledgement.changes.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions.last(), Some(&"delete"), "{actions:?}");
    let error = setup.client.get_user().user_name(&name).send().await.expect_err("the user is gone");
    assert_eq!(error.code(), Some("NoSuchEntity"));
    let virtual_devices = setup.client.list_virtual_mfa_devices().send().await.expect("ListVirtualMFADevices");
    assert!(
        virtual_devices.virtual_mfa_devices().iter().all(|d| d.serial_number() != serial),
        "the leaver's virtual MFA device outlived the user"
    );
    let again = setup.grpc.apply("delete-2", absent).await.expect("deletion re-applied");
    assert!(again.changes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_deletes_the_login_profile_and_deactivates_keys_and_drift_shows() {
    let setup = setup("disable").await;
    let account = account(&format!("mover{:06}", rand::random::<u32>() % 1_000_000));
    let name = account.account_name.clone();
    let mut desired = joiner(&account, &setup.policy_arn);
    setup.grpc.apply("joiner-1", desired.clone()).await.expect("joiner applied");
    let key = setup.client.create_access_key().user_name(&name).send().await.expect("CreateAccessKey");
    let key_id = key.access_key().map(|k| k.access_key_id().to_owned()).expect("key id");
    setup
        .client
        .create_login_profile()
        .user_name(&name)
        .password("Correct-Horse-Battery-9")
        .send()
        .await
        .expect("CreateLoginProfile");

    desired.enabled = false;
    setup.grpc.apply("disable-1", desired.clone()).await.expect("disable applied");
    let error = setup.client.get_login_profile().user_name(&name).send().await.expect_err("login profile deleted");
    assert_eq!(error.code(), Some("NoSuchEntity"));
    let keys = setup.client.list_access_keys().user_name(&name).send().await.expect("ListAccessKeys");
    let statuses: Vec<_> =
        keys.access_key_metadata().iter().map(|k| (k.access_key_id().unwrap_or_default(), k.status())).collect();
    assert_eq!(statuses, vec![(key_id.as_str(), Some(&StatusType::Inactive))], "the key is kept, inactive");
    let state = setup.grpc.read(account.clone()).await.expect("read disabled");
    assert!(!state.enabled);
    assert_eq!(state.credentials.unwrap_or_default().active, vec![format!("access_key:{key_id}:inactive")]);

    // An ad hoc console password on the disabled user makes it usable: read-back shows it enabled (drift).
    setup
        .client
        .create_login_profile()
        .user_name(&name)
        .password("Correct-Horse-Battery-9")
        .send()
        .await
        .expect("CreateLoginProfile");
    let drifted = setup.grpc.read(account.clone()).await.expect("read drifted");
    assert!(drifted.enabled, "a disabled user with a usable password must read back enabled");
    let reverted = setup.grpc.apply("disable-2", desired.clone()).await.expect("disable re-applied");
    assert_eq!(reverted.changes.iter().map(|c| c.subject.as_str()).collect::<Vec<_>>(), vec!["login_profile"]);
    assert!(!setup.grpc.read(account.clone()).await.expect("read").enabled);

    let absent = pb::DesiredAccount {
        account: Some(account),
        presence: pb::Presence::Absent as i32,
        credentials: pb::CredentialAction::Keep as i32,
        ..Default::default()
    };
    setup.grpc.apply("delete-1", absent).await.expect("cleanup");
}
