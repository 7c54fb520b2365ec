//! Pipelined reads on shared PostgreSQL sessions: correct under concurrency, and a read on a
//! session that died runs again on a fresh one.

use keel_pool::Backend;
use keel_repo::Repo;
use keel_schema::MIGRATIONS;
use keel_schema::NewUser;
use keel_test::for_each_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_reads_are_correct_and_survive_a_dead_session() {
    for_each_backend(&MIGRATIONS, |pool| async move {
        let pool = keel_test::pool_with(&pool, |c| c.max_size(4).read_connections(2)).await;
        let repo = Repo::new(pool.clone());
        let users: Vec<NewUser> =
            (0..200).map(|i| NewUser::new(format!("R {i}"), format!("r{i}@example.com"))).collect();
        repo.insert_users(&users).await.unwrap();

        // 64 concurrent readers on 2 shared sessions: every answer is the one asked for.
        let mut tasks = Vec::new();
        for t in 0..64usize {
            let (repo, users) = (repo.clone(), users.clone());
            tasks.push(tokio::spawn(async move {
                for k in 0..20 {
                    let want = &users[(t * 31 + k * 7) % users.len()];
                    let got = repo.get_user(want.id).await.unwrap();
                    assert_eq!(got.email, want.email);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stats = pool.stats();
        if pool.backend() != Backend::Postgres {
            assert_eq!(stats.read_connections_opened, 0);
            return;
        }
        assert_eq!(stats.read_connections_opened, 2, "{stats:?}");

        // Kill both shared sessions from the side: the next reads still answer.
        let side = keel_test::side_pool(&pool).await;
        for _ in 0..2 {
            let reader = pool.reader().await.unwrap().unwrap();
            keel_test::terminate(&side, reader.server_id().unwrap()).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for u in users.iter().take(10) {
            assert_eq!(repo.get_user(u.id).await.unwrap().id, u.id);
        }
        assert_eq!(pool.stats().read_connections_opened, 4);
    })
    .await;
}
