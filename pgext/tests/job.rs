//! Join Order Benchmark-style queries (many joins, `MIN()` over text, LIKE
//! and IN filters) over a small synthetic movie database, in a database of
//! the libc locale `en_US.UTF-8`: taken over, and answered as stock
//! Postgres answers them (weft forced on against weft off, in the same
//! session). The schema follows the IMDB one the Join Order Benchmark
//! queries; the rows are generated, with the titles, names and notes the
//! filters look for among accented, mixed-case and punctuated ones.

use weft_pg_harness::differential::check_both_ways;
use weft_pg_harness::Cluster;

const SCHEMA: &str = "
    CREATE TABLE title (id int PRIMARY KEY, title text NOT NULL, production_year int, kind_id int);
    CREATE TABLE company_type (id int PRIMARY KEY, kind text);
    CREATE TABLE info_type (id int PRIMARY KEY, info text);
    CREATE TABLE company_name (id int PRIMARY KEY, name text, country_code text);
    CREATE TABLE movie_companies (id int PRIMARY KEY, movie_id int, company_id int, company_type_id int, note text);
    CREATE TABLE movie_info_idx (id int PRIMARY KEY, movie_id int, info_type_id int, info text);
    CREATE TABLE movie_info (id int PRIMARY KEY, movie_id int, info_type_id int, info text, note text);
    CREATE TABLE keyword (id int PRIMARY KEY, keyword text);
    CREATE TABLE movie_keyword (id int PRIMARY KEY, movie_id int, keyword_id int);
    CREATE TABLE name (id int PRIMARY KEY, name text, gender text);
    CREATE TABLE cast_info (id int PRIMARY KEY, person_id int, movie_id int, role_id int, note text);

    INSERT INTO title
         SELECT g, (ARRAY['The ', 'A ', 'Der ', 'Les ', '', 'Über ', 'él ', 'Zoë '])[1 + g % 8]
                   || (ARRAY['Iron Man', 'iron man', 'Avengers', 'Æon', 'Sequel', 'co-op', 'Stranger', 'night'])[1 + g / 8 % 8]
                   || ' ' || (g % 37),
                1950 + g % 70, 1 + g % 7
           FROM generate_series(1, 20000) g;
    INSERT INTO company_type VALUES (1, 'distributors'), (2, 'production companies'),
           (3, 'special effects companies'), (4, 'miscellaneous companies');
    INSERT INTO info_type VALUES (1, 'top 250 rank'), (2, 'bottom 10 rank'), (3, 'rating'), (4, 'votes'),
           (5, 'genres'), (6, 'countries'), (7, 'release dates');
    INSERT INTO company_name
         SELECT g, (ARRAY['Warner', 'warner', 'Ümlaut Film', 'Metro-Goldwyn-Mayer', 'Studio Ghibli', 'ÉCU'])[1 + g % 6]
                   || ' ' || g, (ARRAY['[de]', '[us]', '[gb]', NULL, '[fr]'])[1 + g % 5]
           FROM generate_series(1, 2000) g;
    INSERT INTO movie_companies
         SELECT g, 1 + (g * 7) % 20000, 1 + g % 2000, 1 + g % 4,
                (ARRAY['(co-production)', '(presents)', '(as Metro-Goldwyn-Mayer Pictures)', NULL,
                       '(2005) (USA) (theatrical)', '(presents) (co-production)'])[1 + g % 6]
           FROM generate_series(1, 40000) g;
    INSERT INTO movie_info_idx
         SELECT g, 1 + (g * 11) % 20000, 1 + g % 4, (g % 250)::text FROM generate_series(1, 30000) g;
    INSERT INTO movie_info
         SELECT g, 1 + (g * 13) % 20000, 5 + g % 3,
                (ARRAY['Sweden', 'Norway', 'Germany', 'Denmark', 'Swedish', 'Drama', 'Horror', 'USA', 'German'])[1 + g % 9],
                CASE WHEN g % 4 = 0 THEN '(internet)' END
           FROM generate_series(1, 50000) g;
    INSERT INTO keyword
         SELECT g, (ARRAY['character-name-in-title', 'sequel', 'marvel-cinematic-universe', 'superhero',
                          'based-on-novel', 'Sequel-to-remake', 'murder'])[1 + g % 7] || CASE WHEN g > 7 THEN '-' || g ELSE '' END
           FROM generate_series(1, 1000) g;
    INSERT INTO movie_keyword
         SELECT g, 1 + (g * 17) % 20000, 1 + g % 1000 FROM generate_series(1, 50000) g;
    INSERT INTO name
         SELECT g, (ARRAY['Downey Jr., Robert', 'Robert Downey', 'Brönte, Anne', 'Smith, John', 'smith, john',
                          'Øster, Ida', 'Downey, Robert Sr.'])[1 + g % 7] || ' ' || (g % 50),
                (ARRAY['m', 'f', NULL])[1 + g % 3]
           FROM generate_series(1, 5000) g;
    INSERT INTO cast_info
         SELECT g, 1 + g % 5000, 1 + (g * 19) % 20000, 1 + g % 10,
                (ARRAY['(voice)', '(uncredited)', NULL, '(producer)'])[1 + g % 4]
           FROM generate_series(1, 60000) g;
    ANALYZE;
";

const QUERIES: &[(bool, &str)] = &[
    (
        true,
        "SELECT MIN(mc.note) AS production_note, MIN(t.title) AS movie_title, MIN(t.production_year) AS movie_year
           FROM company_type AS ct, info_type AS it, movie_companies AS mc, movie_info_idx AS mi_idx, title AS t
          WHERE ct.kind = 'production companies' AND it.info = 'top 250 rank'
            AND mc.note NOT LIKE '%(as Metro-Goldwyn-Mayer Pictures)%'
            AND (mc.note LIKE '%(co-production)%' OR mc.note LIKE '%(presents)%')
            AND ct.id = mc.company_type_id AND t.id = mc.movie_id AND t.id = mi_idx.movie_id
            AND mc.movie_id = mi_idx.movie_id AND it.id = mi_idx.info_type_id",
    ),
    (
        true,
        "SELECT MIN(t.title) AS movie_title
           FROM company_name AS cn, keyword AS k, movie_companies AS mc, movie_keyword AS mk, title AS t
          WHERE cn.country_code = '[de]' AND k.keyword LIKE 'character-name-in-title%'
            AND cn.id = mc.company_id AND mc.movie_id = t.id AND t.id = mk.movie_id
            AND mk.keyword_id = k.id AND mc.movie_id = mk.movie_id",
    ),
    (
        true,
        "SELECT MIN(t.title) AS movie_title, MAX(t.title) AS last_title
           FROM keyword AS k, movie_info AS mi, movie_keyword AS mk, title AS t
          WHERE k.keyword LIKE '%sequel%'
            AND mi.info IN ('Sweden', 'Norway', 'Germany', 'Denmark', 'Swedish', 'Denish', 'Norwegian', 'German')
            AND t.production_year > 2005 AND t.id = mi.movie_id AND t.id = mk.movie_id
            AND mk.movie_id = mi.movie_id AND k.id = mk.keyword_id",
    ),
    (
        true,
        "SELECT MIN(k.keyword) AS movie_keyword, MIN(n.name) AS actor_name, MIN(t.title) AS hero_movie
           FROM cast_info AS ci, keyword AS k, movie_keyword AS mk, name AS n, title AS t
          WHERE k.keyword LIKE 'marvel-cinematic-universe%' AND n.name LIKE '%Downey%Robert%'
            AND t.production_year > 2000 AND k.id = mk.keyword_id AND t.id = mk.movie_id
            AND t.id = ci.movie_id AND ci.movie_id = mk.movie_id AND n.id = ci.person_id",
    ),
    (
        true,
        "SELECT cn.country_code, MIN(cn.name) AS company, MAX(t.title) AS title, count(*)
           FROM company_name AS cn, movie_companies AS mc, title AS t, company_type AS ct
          WHERE cn.id = mc.company_id AND t.id = mc.movie_id AND ct.id = mc.company_type_id
            AND ct.kind IN ('distributors', 'production companies') AND t.title > 'M'
          GROUP BY cn.country_code ORDER BY cn.country_code NULLS FIRST",
    ),
    (
        true,
        "SELECT n.gender, MIN(n.name), MAX(n.name), MIN(ci.note), count(DISTINCT t.id)
           FROM name AS n, cast_info AS ci, title AS t, movie_info AS mi, info_type AS it
          WHERE n.id = ci.person_id AND ci.movie_id = t.id AND mi.movie_id = t.id AND it.id = mi.info_type_id
            AND it.info = 'genres' AND mi.info IN ('Drama', 'Horror') AND ci.note IN ('(voice)', '(producer)')
          GROUP BY n.gender ORDER BY MIN(n.name) DESC, n.gender",
    ),
    (
        true,
        "SELECT t.title, count(*) AS companies
           FROM title AS t JOIN movie_companies AS mc ON mc.movie_id = t.id
           JOIN company_name AS cn ON cn.id = mc.company_id
          WHERE cn.name LIKE 'Ü%' OR cn.name LIKE 'É%'
          GROUP BY t.title ORDER BY companies DESC, t.title LIMIT 25",
    ),
];

#[test]
fn job_style_queries_in_an_en_us_database_answer_as_postgres() {
    let cluster = Cluster::start();
    let mut client = cluster.database("imdb", "LOCALE 'en_US.UTF-8'");
    client.batch_execute("CREATE EXTENSION weft").unwrap();
    client.batch_execute(SCHEMA).unwrap();
    client.batch_execute("SET max_parallel_workers_per_gather = 2").unwrap();
    check_both_ways(&mut client, QUERIES);
}
